"""Scenario 12, a worker frozen inside its guarded transactions, and another killed beside it.

One worker is SIGSTOPped while its jobs sit inside `async with conn.transaction(): await ctx.first_time(conn)`
(a VM pause, a long GC, swap), holding their rows; 2 s later a second worker is SIGKILLed; the others keep
running. The killed worker's jobs are handed on within 15 s, however long the freeze; nothing waits on the
frozen rows (lock waiters and connections stay bounded); when the freeze ends, every job ends succeeded,
each guarded effect once, and no attempt is left open on a final record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from millrace import JobClient, Pool
from tests.chaos.harness import elapsed, pass_line, pick, tally, unfinished, wait_all_final
from tests.processes import processes, wait_for
from tests.sample import app

pytestmark = pytest.mark.e2e

FREEZE_S = pick(12, 120)
HEALTHY = int(pick(1, 3))
#: each job holds its row for this long inside its guarded transaction
EFFECT_S = 2.0
#: enough for every worker to hold a full house (4 slots each) when the freeze and the kill come
JOBS = int(pick(40, 120))
HAND_ON_BOUND_S = 15.0


async def held_by(pool: Pool, pid: int) -> list[str]:
    rows = await pool.fetch(
        "SELECT id FROM millrace_jobs WHERE status = 'in_progress' AND split_part(worker, ':', 2) = $1", str(pid)
    )
    return [r["id"] for r in rows]


async def still_held(pool: Pool, job_ids: list[str], pid: int) -> int:
    value = await pool.fetchval(
        """SELECT count(*) FROM millrace_jobs WHERE id = ANY($1::text[]) AND status = 'in_progress'
               AND split_part(worker, ':', 2) = $2""",
        job_ids,
        str(pid),
    )
    return int(value)


async def server_load(pool: Pool) -> tuple[int, int]:
    """(backends waiting on a lock, connections) of the test's database."""
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting, count(*) AS connections
           FROM pg_stat_activity WHERE datname = current_database()"""
    )
    assert row is not None
    return int(row["waiting"]), int(row["connections"])


async def test_a_frozen_holder_stalls_nobody_and_a_killed_workers_jobs_are_handed_on(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ids = [(await client.enqueue(app.GUARDED_SLOW, app.SleepArgs(seconds=EFFECT_S))).id for _ in range(JOBS)]
    async with processes(database_url, redis_url, tmp_path) as start:
        frozen = start("arq", "tests.sample.worker.NoCronWorker")
        killed = start("arq", "tests.sample.worker.NoCronWorker")
        await wait_for(lambda: held_by(pool, frozen.pid), timeout_s=60, what="the frozen worker's first jobs")
        await wait_for(lambda: held_by(pool, killed.pid), timeout_s=60, what="the killed worker's first jobs")
        for _ in range(HEALTHY):
            start("arq", "tests.sample.worker.NoCronWorker")
        # frozen and killed while each holds jobs (inside their guarded transactions)
        await wait_for(lambda: held_by(pool, frozen.pid), timeout_s=60, what="the frozen worker to hold jobs")
        began = time.monotonic()
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(2)
            await wait_for(lambda: held_by(pool, killed.pid), timeout_s=30, what="the killed worker to hold jobs")
            killed.kill()
            killed_at = time.monotonic()
            victims = await held_by(pool, killed.pid)  # what it held when it died: its to hand on
            handed_on_s: float | None = None
            most_waiting, most_connections = 0, 0
            while time.monotonic() - began < FREEZE_S:
                waiting, connections = await server_load(pool)
                most_waiting, most_connections = max(most_waiting, waiting), max(most_connections, connections)
                if handed_on_s is None and await still_held(pool, victims, killed.pid) == 0:
                    handed_on_s = time.monotonic() - killed_at
                await asyncio.sleep(0.5)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert handed_on_s is not None, frozen.output()[-3000:]
        assert handed_on_s <= HAND_ON_BOUND_S, handed_on_s
        await wait_all_final(pool, JOBS, timeout_s=pick(180, 600))
        drained = elapsed(began)
        assert frozen.popen.poll() is None, "the frozen worker lives on after the freeze: " + frozen.output()[-3000:]
    open_attempts = await pool.fetchval(
        """SELECT count(*) FROM millrace_job_attempts a JOIN millrace_jobs j ON j.id = a.job_id
           WHERE a.outcome IS NULL AND j.status IN ('succeeded', 'dead', 'cancelled')"""
    )
    assert open_attempts == 0
    result = await tally(pool)
    assert result.statuses == Counter({"succeeded": JOBS}), (result.statuses, await unfinished(pool))
    assert set(result.guarded) == set(ids)
    assert set(result.guarded.values()) == {1}
    # a killed worker's jobs and a frozen one's are handed on: nothing waits on the frozen rows for long
    assert victims, "the killed worker held jobs when it was killed"
    assert most_waiting <= 4, most_waiting
    assert most_connections <= 12 * (HEALTHY + 3), most_connections
    pass_line(
        "12 frozen holder",
        jobs=JOBS,
        freeze_s=FREEZE_S,
        healthy_workers=HEALTHY,
        killed_jobs_handed_on_in=f"{handed_on_s:.1f}s",
        killed_jobs=len(victims),
        most_lock_waiters=most_waiting,
        most_connections=most_connections,
        drained_in=drained,
        dead=0,
        duplicated_guarded_effects=0,
        max_attempts_counted=result.max_counted_attempts,
    )
