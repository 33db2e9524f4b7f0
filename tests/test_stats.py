"""The per-minute stats the claims and finishes write, their folding, and the quantiles read from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from millrace import NoArgs, Pool, store
from millrace.client import JobClient
from millrace.fingerprints import fingerprint
from millrace.stats import BUCKETS_S, drain_estimate_s, quantile
from tests.conftest import RunWorker
from tests.sample import app


@given(st.lists(st.integers(min_value=0, max_value=1000), min_size=len(BUCKETS_S), max_size=len(BUCKETS_S)))
def test_quantiles_of_any_histogram_are_ordered_and_within_the_bounds(counts: list[int]) -> None:
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
    total = cumulative[-1]
    p50, p95 = quantile(cumulative, total, 0.5), quantile(cumulative, total, 0.95)
    if total == 0:
        assert p50 is None
        assert p95 is None
        return
    assert p50 is not None
    assert p95 is not None
    assert 0 <= p50 <= p95 <= BUCKETS_S[-1]


def test_a_quantile_interpolates_inside_its_bucket() -> None:
    # 10 values at most 0.1 s, 10 more at most 0.25 s: the median is the edge of the first group
    cumulative = [0] * 6 + [10, 20] + [20] * (len(BUCKETS_S) - 8)
    assert quantile(cumulative, 20, 0.5) == 0.1
    assert quantile(cumulative, 20, 0.75) == 0.1 + (0.25 - 0.1) * 0.5


def test_a_backlog_drains_only_when_completions_outrun_arrivals() -> None:
    assert drain_estimate_s(100, arrivals_per_s=1.0, completions_per_s=3.0) == 50.0
    assert drain_estimate_s(100, arrivals_per_s=3.0, completions_per_s=3.0) is None
    assert drain_estimate_s(0, arrivals_per_s=3.0, completions_per_s=0.0) == 0.0


def _fail(value: int) -> None:
    raise ValueError(f"bad value {value}")


def test_one_bug_is_one_fingerprint_whatever_its_values() -> None:
    def caught(value: int) -> BaseException:
        try:
            _fail(value)
        except ValueError as error:
            return error
        raise AssertionError

    assert fingerprint("job", caught(1)) == fingerprint("job", caught(2))
    assert fingerprint("job", caught(1)) != fingerprint("other_job", caught(1))
    assert fingerprint("job", caught(1)) != fingerprint("job", KeyError("x"))


async def test_claims_and_finishes_count_what_the_attempts_say(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    for _ in range(3):
        await client.enqueue(app.NOOP, NoArgs())
    await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))  # one retry, then success
    await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up"))  # dead at once
    await run_worker()

    async with pool.acquire() as conn:
        totals = {function: t for (_, function), t in (await store.insights.totals(conn)).items()}
        outcomes = await conn.fetch(
            """SELECT j.function, a.outcome, count(*) AS n FROM millrace_job_attempts a
               JOIN millrace_jobs j ON j.id = a.job_id GROUP BY 1, 2"""
        )
    by = {(r["function"], r["outcome"]): r["n"] for r in outcomes}
    assert (totals["noop"].started, totals["noop"].first_started, totals["noop"].succeeded) == (3, 3, 3)
    flaky = totals["flaky"]
    assert (flaky.started, flaky.first_started) == (3, 2)
    assert (flaky.succeeded, flaky.retried, flaky.dead) == (
        by[("flaky", "succeeded")],
        by[("flaky", "retrying")],
        by[("flaky", "dead")],
    )
    # every started attempt waited some time and every finished one ran some: the last bucket has them all
    assert flaky.wait_le[-1] == flaky.started
    assert flaky.duration_le[-1] == flaky.succeeded + flaky.retried + flaky.dead
    assert all(a <= b for a, b in zip(flaky.duration_le, flaky.duration_le[1:], strict=False))


async def test_the_dead_job_keeps_its_error_group(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    first = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up"))
    second = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=5, error="give_up"))
    await run_worker()
    async with pool.acquire() as conn:
        jobs = [await store.jobs.get_job(conn, j.id) for j in (first, second)]
        groups = await store.insights.error_groups(conn, now=datetime.now(UTC))
    assert jobs[0].last_fingerprint is not None
    assert jobs[0].last_fingerprint == jobs[1].last_fingerprint
    (group,) = [g for g in groups if g.fingerprint == jobs[0].last_fingerprint]
    assert (group.function, group.error_type, group.dead_now, group.failures_hour) == (
        "flaky",
        "PermissionError",
        2,
        2,
    )


async def test_folding_old_minutes_keeps_the_totals(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    for _ in range(4):
        await client.enqueue(app.NOOP, NoArgs())
    await run_worker()
    async with pool.acquire() as conn:
        before = await store.insights.totals(conn)
        # as if the minutes were a month old: retention folds them into the series' base row
        await conn.execute("UPDATE millrace_stats SET minute = minute - interval '40 days'")
        folded = await store.insights.fold_stats_before(conn, datetime.now(UTC) - timedelta(days=30))
        after = await store.insights.totals(conn)
        rows = await conn.fetchval("SELECT count(*) FROM millrace_stats")
    assert folded >= 1
    assert before == after
    assert rows == len(after)
