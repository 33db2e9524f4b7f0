"""Redis restarted without persistence while it held the queue: every job still runs, once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from millrace import JobClient, Pool, store
from tests.conftest import effects
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import PrivateRedis

pytestmark = pytest.mark.e2e
JOBS = 300


async def test_jobs_lost_with_redis_are_restored_by_a_worker_and_run_once(
    pool: Pool, database_url: str, tmp_path: Path
) -> None:
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    try:
        async with JobClient.open(redis_url=redis_server.url, pool=pool) as client:
            enqueued = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in range(JOBS)]
        redis_server.stop()
        redis_server.start()  # empty: the queue is gone, the records remain
        await asyncio.sleep(1.0)  # the records must be quiet for the reconciler to trust they are lost
        async with processes(database_url, redis_server.url, tmp_path) as start:
            worker = start("arq", "tests.sample.worker.NoCronWorker")

            async def all_succeeded() -> bool:
                statuses = await store.jobs.queue_statuses(pool)
                return sum(s.counts.get("succeeded", 0) for s in statuses) == JOBS

            await wait_for(all_succeeded, timeout_s=60, what=f"{JOBS} jobs to succeed: {worker.log_path}")
    finally:
        redis_server.stop()
    runs = Counter(r["job_id"] for r in await effects(pool, "ran"))
    assert set(runs) == {e.id for e in enqueued}
    assert set(runs.values()) == {1}
