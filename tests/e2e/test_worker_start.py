"""A worker started while PostgreSQL is away waits for it, as a running worker waits out an outage, and
starts once it is back: it does not end (a deploy that starts workers during a database failover would
otherwise see them crash-loop)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from millrace import JobClient, NoArgs, store
from tests.conftest import migrate
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import PrivatePostgres

pytestmark = pytest.mark.e2e


async def test_a_worker_started_while_postgres_is_away_waits_and_then_runs_jobs(
    private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    await migrate(private_postgres.url)
    private_postgres.stop()
    async with processes(private_postgres.url, redis_url, tmp_path) as start:
        worker = start("arq", "tests.sample.worker.NoCronWorker")
        await wait_for(
            lambda: "worker_start_waiting" in worker.output(), timeout_s=60, what="the worker to wait for PostgreSQL"
        )
        await asyncio.sleep(1)
        assert worker.popen.poll() is None, worker.output()
        private_postgres.start()
        pool = await store.pool.create_pool(private_postgres.url)
        try:
            async with JobClient.open(redis_url=redis_url, pool=pool) as client:
                enqueued = await client.enqueue(app.NOOP, NoArgs())

                async def succeeded() -> bool:
                    return (await store.jobs.get_job(pool, enqueued.id)).status == "succeeded"

                await wait_for(succeeded, timeout_s=60, what="the job to run once PostgreSQL is back")
        finally:
            await pool.close()
        assert worker.popen.poll() is None, worker.output()
