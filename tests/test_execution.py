"""Jobs run by a real arq worker (in process, burst mode) against real Redis and PostgreSQL."""

from __future__ import annotations

import itertools

import structlog

from millrace import NoArgs, Pool, store
from millrace.client import JobClient
from tests.conftest import RunWorker, attempt_outcomes, effects
from tests.sample import app


async def test_successful_job_is_recorded(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert (job.status, job.attempts, job.function, job.queue) == ("succeeded", 1, "noop", "testq")
    assert job.started_at is not None
    assert job.finished_at is not None
    assert attempt_outcomes(attempts) == ["succeeded"]
    assert attempts[0].duration_ms is not None
    assert attempts[0].worker == job.worker


async def test_retryable_error_is_retried_then_succeeds(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=2))
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert (job.status, job.attempts) == ("succeeded", 3)
    assert attempt_outcomes(attempts) == ["retrying", "retrying", "succeeded"]
    assert attempts[0].error_type == "ConnectionError"
    assert attempts[0].traceback
    assert job.last_error_type == "ConnectionError"


async def test_give_up_error_is_dead_at_once(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=9, error="give_up"))
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "PermissionError")
    assert len(await effects(pool, "ran")) == 1


async def test_exhausted_policy_ends_dead_with_its_error(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=9))
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert (job.status, job.attempts, job.last_error) == ("dead", 3, "provider down")
    assert attempt_outcomes(attempts) == ["retrying", "retrying", "dead"]


async def test_timeout_goes_through_the_policy(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    """Bare arq fails a timed-out job for good; here it is retried, then dead."""
    enqueued = await client.enqueue(app.HANG, NoArgs())
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert (job.status, job.last_error_type) == ("dead", "JobTimedOut")
    assert attempt_outcomes(attempts) == ["retrying", "dead"]


async def test_retry_after_is_honoured(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    """The job asks for 0.4 s; the policy's own backoff (30 s) is not used."""
    enqueued = await client.enqueue(app.THROTTLED, NoArgs())
    await run_worker()
    runs = await effects(pool, "ran")
    gap_s = (runs[1]["at"] - runs[0]["at"]).total_seconds()
    assert 0.4 <= gap_s < 2.0
    async with pool.acquire() as conn:
        assert (await store.jobs.get_job(conn, enqueued.id)).status == "succeeded"


async def test_backoff_schedule_is_kept(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    """The field's example at 1:20 scale: fail, ~0.5 s, fail, ~3 s, succeed (±10 % jitter, plus polling)."""
    await client.enqueue(app.SCHEDULED_BACKOFF, NoArgs())
    await run_worker()
    runs = await effects(pool, "ran")
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(runs)]
    assert len(runs) == 3
    assert 0.45 <= gaps[0] <= 0.75
    assert 2.7 <= gaps[1] <= 3.5


async def test_log_lines_inside_a_job_carry_its_identity(client: JobClient, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await run_worker()
    finished = [line for line in logs if line["event"] == "job_finished"]
    assert [(f["outcome"], f["attempt"]) for f in finished] == [("retrying", 1), ("succeeded", 2)]
    for line in finished:
        assert line["job_id"] == enqueued.id
        assert (line["job"], line["queue"]) == ("flaky", "testq")
        assert "duration_ms" in line
    # the job's own log lines carry the same identity
    (sent,) = [line for line in logs if line["event"] == "flaky_ran" and line["attempt"] == 2]
    assert sent["job_id"] == enqueued.id
