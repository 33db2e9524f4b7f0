"""Scenario 7, rolling deploy under load: SIGTERM to every worker in turn, each replaced by a new one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from millrace import JobClient, Pool
from tests.chaos.harness import check_once_each, elapsed, enqueue_mixed, pass_line, pick, wait_all_final
from tests.processes import Process, processes, wait_for

pytestmark = pytest.mark.e2e

#: enough that the load outlasts the deploy's rounds, each of which waits for a new worker to start (seconds
#: on a loaded machine): a SIGTERM must find guarded jobs running
JOBS = int(pick(300, 2_000))
WORKERS = 2
ROUNDS = int(pick(2, 5))
#: the scenario sets no time bound; the load alone needs half the jobs x 1.5 s over 2 workers x 4 slots
#: (187 s at full scale), and a retried job waits behind the older backlog, so the wait allows twice that
DRAIN_WAIT_S = pick(180, 600)


async def registered(pool: Pool, pid: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM millrace_workers WHERE pid = $1", pid))


async def test_a_rolling_deploy_loses_nothing_and_counts_no_attempt(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    # each guarded job outlasts the 1 s grace, so that every SIGTERM cuts some short
    ids = await enqueue_mixed(client, JOBS, sleep_s=1.5)
    before = await pool.fetchval("SELECT count(*) FROM millrace_job_attempts WHERE outcome = 'interrupted'")
    assert before == 0
    async with processes(database_url, redis_url, tmp_path) as start:

        def new_worker() -> Process:
            return start("arq", "tests.sample.worker.NoCronWorker", SHUTDOWN_GRACE_S="1")

        async def ready(worker: Process) -> None:
            # a rolling deploy stops the old worker once the new one is up; a process still importing
            # when SIGTERM comes ends by the signal's default (-15), having taken nothing
            await wait_for(lambda: registered(pool, worker.pid), timeout_s=120, what="the new worker to start")

        workers = [new_worker() for _ in range(WORKERS)]
        for worker in workers:
            await ready(worker)
        began = time.monotonic()
        for _ in range(ROUNDS):
            for n, old in enumerate(workers):
                await asyncio.sleep(0.5)
                workers[n] = new_worker()  # the new one first, as a rolling deploy does
                await ready(workers[n])
                old.stop(timeout_s=20)
                assert old.popen.returncode == 0, old.output()
        await wait_all_final(pool, JOBS, timeout_s=DRAIN_WAIT_S)
        drained = elapsed(began)
    result = await check_once_each(pool, ids)
    interrupted = await pool.fetchval("SELECT count(*) FROM millrace_job_attempts WHERE outcome = 'interrupted'")
    counted = await pool.fetchval(
        "SELECT count(*) FROM millrace_jobs WHERE counted_attempts > (CASE WHEN function = 'flaky' THEN 2 ELSE 1 END)"
    )
    assert counted == 0
    assert interrupted > 0
    pass_line(
        "7 rolling deploy",
        jobs=JOBS,
        sigterms=ROUNDS * WORKERS,
        interrupted_attempts_not_counted=interrupted,
        attempts_counted_for_the_deploy=counted,
        lost=0,
        dead=result.statuses["dead"],
        drained_in=drained,
    )
