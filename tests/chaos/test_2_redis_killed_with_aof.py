"""Scenario 2, Redis SIGKILLed with an append-only file during a stream of enqueues, then restarted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from millrace import JobClient, Pool
from tests.chaos.harness import pass_line, pick, succeeded_since, tally, wait_all_final
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import PrivateRedis

pytestmark = pytest.mark.e2e

JOBS = int(pick(1_000, 5_000))
RATE_PER_S = 500
DOWN_S = pick(2, 5)
RESUME_BOUND_S = 30


async def test_nothing_is_lost_when_redis_dies_mid_stream(pool: Pool, database_url: str, tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path, append_only=True)
    redis_server.start()
    try:
        async with (
            JobClient.open(redis_url=redis_server.url, pool=pool) as client,
            processes(database_url, redis_server.url, tmp_path) as start,
        ):
            worker = start("arq", "tests.sample.worker.NoCronWorker")

            async def produce() -> None:
                for n in range(JOBS):
                    await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
                    if n % 50 == 0:
                        await asyncio.sleep(50 / RATE_PER_S)

            producing = asyncio.create_task(produce())
            await asyncio.sleep(JOBS / RATE_PER_S / 3)
            redis_server.stop()  # SIGKILL: whatever the last second of the append-only file missed is gone
            await asyncio.sleep(DOWN_S)
            redis_server.start()
            restarted_at, restarted_wall = time.monotonic(), time.time()
            await producing

            async def resumed() -> bool:
                return await succeeded_since(pool, restarted_wall) > 0

            try:
                await wait_for(resumed, timeout_s=RESUME_BOUND_S, what="processing to resume")
            except AssertionError as error:  # rare (1 run in about 12): the worker's own words say why
                raise AssertionError(f"{error}; {(await tally(pool)).statuses}\n{worker.output()[-8000:]}") from None
            resumed_in = time.monotonic() - restarted_at
            await wait_all_final(pool, JOBS, timeout_s=120)
            assert worker.popen.poll() is None, worker.output()
    finally:
        redis_server.stop()
    result = await tally(pool)
    assert result.statuses["succeeded"] == JOBS, result.statuses
    runs = await pool.fetchval("SELECT count(*) FROM test_effects WHERE kind = 'ran'")
    pass_line(
        "2 redis killed with AOF",
        jobs=JOBS,
        redis_down_s=DOWN_S,
        lost=JOBS - result.statuses["succeeded"],
        resumed_after_s=f"{resumed_in:.1f}",
        bodies_run=runs,
        worker_restarts=0,
    )
