"""What the chaos scenarios share: their scale, their load, their checks and their pass lines.

`make test` runs the short version of scenarios 1, 2, 4, 7 and 12; `make chaos` runs every scenario at
full scale (MILLRACE_CHAOS=full). Each prints one pass line with its figures.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from millrace import JobClient, Pool, store
from tests.processes import wait_for
from tests.sample import app

FULL = os.environ.get("MILLRACE_CHAOS") == "full"
#: the scenarios that run only in `make chaos` (or with MILLRACE_CHAOS=short, to try them quickly)
chaos_only = pytest.mark.skipif(
    not os.environ.get("MILLRACE_CHAOS"), reason="a `make chaos` scenario; MILLRACE_CHAOS=short runs it small"
)


def pick(short: float, full: float) -> float:
    return full if FULL else short


def pass_line(scenario: str, **figures: object) -> None:
    shown = ", ".join(f"{name}={value}" for name, value in figures.items())
    print(f"\nCHAOS PASS [{'full' if FULL else 'short'}] {scenario}: {shown}")


@dataclass(frozen=True, slots=True)
class Tally:
    statuses: Counter[str]
    max_counted_attempts: int
    #: guarded effects per job, for the jobs that make one
    guarded: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


async def tally(pool: Pool) -> Tally:
    # the sample app's queue only: a scenario with the web app has its signups' jobs waiting in the demo's
    rows = await pool.fetch(
        "SELECT status, count(*) AS n, max(counted_attempts) AS m FROM millrace_jobs WHERE queue = $1 GROUP BY 1",
        app.TESTQ.name,
    )
    guarded = await pool.fetch("SELECT job_id, count(*) AS n FROM test_guarded_effects GROUP BY 1")
    return Tally(
        statuses=Counter({r["status"]: r["n"] for r in rows}),
        max_counted_attempts=max((r["m"] for r in rows), default=0),
        guarded=Counter({r["job_id"]: r["n"] for r in guarded}),
    )


async def enqueue_mixed(client: JobClient, count: int, *, sleep_s: float = 0.02) -> list[str]:
    """Half jobs with a guarded effect, half that fail once and then succeed."""
    ids: list[str] = []
    for n in range(count):
        if n % 2:
            ids.append((await client.enqueue(app.GUARDED, app.SleepArgs(seconds=sleep_s))).id)
        else:
            ids.append((await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))).id)
    return ids


async def all_final(pool: Pool, expected: int) -> bool:
    counts = (await tally(pool)).statuses
    return counts["succeeded"] + counts["dead"] + counts["cancelled"] >= expected


async def unfinished(pool: Pool, limit: int = 10) -> list[str]:
    """Records not final yet, or not succeeded, with their attempts: what a failed scenario must show."""
    rows = await pool.fetch(
        """SELECT j.id, j.status, j.worker, j.counted_attempts, j.last_error_type,
                  array_agg(coalesce(a.outcome, 'open') || ':' || coalesce(a.error_type, '-') ORDER BY a.attempt)
                      AS attempts
           FROM millrace_jobs j LEFT JOIN millrace_job_attempts a ON a.job_id = j.id
           WHERE j.status <> 'succeeded' AND j.queue = $2 GROUP BY j.id ORDER BY j.updated_at LIMIT $1""",
        limit,
        app.TESTQ.name,
    )
    return [
        f"{r['id']} {r['status']} worker={r['worker']} counted={r['counted_attempts']} "
        f"last_error={r['last_error_type']} attempts={r['attempts']}"
        for r in rows
    ]


async def wait_all_final(pool: Pool, expected: int, *, timeout_s: float) -> None:
    try:
        await wait_for(lambda: all_final(pool, expected), timeout_s=timeout_s, what=f"{expected} jobs to finish")
    except AssertionError as error:
        details = "\n  ".join(await unfinished(pool))
        raise AssertionError(f"{error}; {(await tally(pool)).statuses}; for instance:\n  {details}") from None


async def succeeded_since(pool: Pool, since: float) -> int:
    """Jobs finished after a moment of time.time(), by their records."""
    value = await pool.fetchval(
        "SELECT count(*) FROM millrace_jobs WHERE status = 'succeeded' AND finished_at > to_timestamp($1)", since
    )
    return int(value)


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"


async def check_once_each(pool: Pool, ids: list[str]) -> Tally:
    """Every job succeeded, within its policy, and each guarded effect happened exactly once."""
    result = await tally(pool)
    assert result.statuses == Counter({"succeeded": len(ids)}), (result.statuses, await unfinished(pool))
    assert result.max_counted_attempts <= app.QUICK_RETRY.attempts
    guarded_jobs = [i for n, i in enumerate(ids) if n % 2]
    assert set(result.guarded) == set(guarded_jobs)
    assert set(result.guarded.values()) == {1}
    for job_id in ids[:5]:  # spot-check the history of a few
        assert (await store.jobs.get_job(pool, job_id)).status == "succeeded"
    return result
