"""Scenario 4, PostgreSQL stopped while jobs run: no job succeeds without its record, none dies of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import db
from millrace import JobClient, store
from tests.chaos.harness import all_final, pass_line, pick, tally
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import PrivatePostgres

pytestmark = pytest.mark.e2e

JOBS = int(pick(300, 3_000))
DOWN_S = pick(5, 30)
HEALTHY_BOUND_S = 60


async def test_jobs_ride_out_a_postgres_outage(
    private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    conn = await store.pool.connect(private_postgres.url)
    try:
        await store.migrate.apply_migrations(conn, [db.MIGRATIONS, app.MIGRATIONS])
    finally:
        await conn.close()
    pool = await store.pool.create_pool(private_postgres.url)
    try:
        async with (
            JobClient.open(redis_url=redis_url, pool=pool) as client,
            processes(private_postgres.url, redis_url, tmp_path) as start,
        ):
            ids = [(await client.enqueue(app.SLEEPY, app.SleepArgs(seconds=0.05))).id for _ in range(JOBS)]
            workers = [start("arq", "tests.sample.worker.NoCronWorker") for _ in range(2)]
            await asyncio.sleep(1)
            private_postgres.stop()
            await asyncio.sleep(DOWN_S)
            private_postgres.start()
            back = time.monotonic()
            await wait_for(lambda: all_final(pool, JOBS), timeout_s=HEALTHY_BOUND_S, what="every job to finish")
            healthy_in = time.monotonic() - back
            assert all(w.popen.poll() is None for w in workers), [w.output() for w in workers]
        result = await tally(pool)
        ends = await pool.fetch("SELECT DISTINCT job_id FROM test_effects WHERE kind = 'end'")
    finally:
        await pool.close()
    assert result.statuses["succeeded"] == JOBS, result.statuses
    assert result.statuses["dead"] == 0
    # a body that ended wrote its effect before its record; each such job's record is final
    assert {r["job_id"] for r in ends} <= set(ids)
    pass_line(
        "4 postgres stopped",
        jobs=JOBS,
        postgres_down_s=DOWN_S,
        dead=0,
        succeeded_without_record=0,
        all_done_after_return_s=f"{healthy_in:.1f}",
        worker_exits=0,
    )
