"""Scenario 1, worker crash storm: a worker SIGKILLed every 2 s and restarted, under a mixed load."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from millrace import JobClient, Pool
from tests.chaos.harness import all_final, check_once_each, elapsed, enqueue_mixed, pass_line, pick, wait_all_final
from tests.processes import Process, processes

pytestmark = pytest.mark.e2e

JOBS = int(pick(600, 10_000))
WORKERS = int(pick(2, 4))
STORM_S = pick(10, 60)
DRAIN_BOUND_S = 300


async def test_every_job_succeeds_once_through_a_storm_of_sigkills(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    ids = await enqueue_mixed(client, JOBS)
    kills = 0
    async with processes(database_url, redis_url, tmp_path) as start:
        workers: list[Process] = [start("arq", "tests.sample.worker.NoCronWorker") for _ in range(WORKERS)]
        began = time.monotonic()
        while time.monotonic() - began < STORM_S and not await all_final(pool, JOBS):
            await asyncio.sleep(2)
            victim = random.randrange(len(workers))
            workers[victim].kill()
            kills += 1
            workers[victim] = start("arq", "tests.sample.worker.NoCronWorker")
        await wait_all_final(pool, JOBS, timeout_s=DRAIN_BOUND_S)
        drained = elapsed(began)
    result = await check_once_each(pool, ids)
    pass_line(
        "1 crash storm",
        jobs=JOBS,
        workers=WORKERS,
        sigkills=kills,
        drained_in=drained,
        lost=0,
        duplicated_guarded_effects=0,
        max_attempts_counted=result.max_counted_attempts,
    )
