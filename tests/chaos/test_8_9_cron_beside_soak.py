"""Scenarios 8 and 9 each need half an hour of wall clock: they share it, and `make chaos` runs this test
in a lane of its own beside the other scenarios, so the whole run stays within its 40 minutes. The cron
workers (the sample app's queue) and the soak (the demo's queues) use separate queues; the soak has a
Redis server of its own, since its memory figure is the server's and the other lane loads the shared one.
Each scenario checks and prints its own figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from millrace import Pool
from tests.chaos.cron_clock_behind import LIBFAKETIME, run_cron_scenario
from tests.chaos.harness import chaos_only
from tests.chaos.soak import run_soak
from tests.processes import processes
from tests.servers import PrivateRedis

pytestmark = [
    pytest.mark.e2e,
    chaos_only,
    pytest.mark.skipif(
        not LIBFAKETIME.exists(),
        reason=f"libfaketime not installed at {LIBFAKETIME} (apt-get install faketime; .ci/run installs it)",
    ),
]


async def test_cron_ticks_once_with_a_lagging_clock_while_the_soak_holds_steady(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    cron_folder, soak_folder, soak_redis_folder = tmp_path / "cron", tmp_path / "soak", tmp_path / "soak-redis"
    for folder in (cron_folder, soak_folder, soak_redis_folder):
        folder.mkdir()
    soak_redis = PrivateRedis(soak_redis_folder)
    soak_redis.start()
    try:
        async with processes(database_url, redis_url, cron_folder) as start:
            results = await asyncio.gather(
                run_cron_scenario(pool, start, cron_folder),
                run_soak(pool, database_url, soak_redis.url, soak_folder),
                return_exceptions=True,
            )
    finally:
        soak_redis.stop()
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        raise failures[0]
