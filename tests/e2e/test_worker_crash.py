"""A worker killed with SIGKILL in the middle of a job: another worker completes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from millrace import Pool, store
from millrace.client import JobClient
from tests.conftest import effects
from tests.processes import processes, wait_for
from tests.sample import app

pytestmark = pytest.mark.e2e


async def test_job_of_a_killed_worker_is_completed_by_another(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with processes(database_url, redis_url, tmp_path) as start:
        first = start("arq", "tests.sample.worker.NoCronWorker")
        enqueued = await client.enqueue(app.SLEEPY, app.SleepArgs(seconds=2))

        async def started() -> bool:
            attempts = await store.jobs.list_attempts(pool, enqueued.id)
            return len(attempts) == 1 and len(await effects(pool, "start")) == 1

        await wait_for(started, timeout_s=20, what="the first attempt to start and be recorded")
        first.kill()
        second = start("arq", "tests.sample.worker.NoCronWorker")

        async def succeeded() -> bool:
            async with pool.acquire() as conn:
                return (await store.jobs.get_job(conn, enqueued.id)).status == "succeeded"

        # arq hands the job on once the dead worker's in-progress mark expires: longest timeout + 10 s
        await wait_for(succeeded, timeout_s=40, what="the second worker to finish the job")

    async with pool.acquire() as conn:
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert [a.outcome for a in attempts] == ["lost", "succeeded"]
    assert attempts[0].worker is not None
    assert f":{first.pid}:" in attempts[0].worker
    assert attempts[1].worker is not None
    assert f":{second.pid}:" in attempts[1].worker
    assert [r["kind"] for r in await effects(pool)] == ["start", "start", "end"]
