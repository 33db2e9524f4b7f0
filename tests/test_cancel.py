"""Cancelling a job that has not started: out of Redis and the outbox, `cancelled` on record."""

from __future__ import annotations

from millrace import NoArgs, Pool, store
from millrace.client import JobClient
from tests.cli_run import millrace
from tests.conftest import RunWorker, effects
from tests.sample import app


async def test_cancelled_job_never_runs(client: JobClient, pool: Pool, redis_url: str, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), delay_s=0.3)
    assert await client.cancel(enqueued.id) == "cancelled"
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
    assert job.status == "cancelled"
    assert await effects(pool) == []
    assert await client.redis.zcard(app.TESTQ.redis_key) == 0


async def test_cancelling_a_job_still_in_the_outbox_removes_it(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        enqueued = await client.enqueue(app.NOOP, NoArgs(), conn=conn)
    assert await client.cancel(enqueued.id) == "cancelled"
    assert await store.outbox.count_entries(pool) == 0


async def test_finished_job_is_not_cancelled(
    client: JobClient, database_url: str, redis_url: str, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    await run_worker()
    assert await client.cancel(enqueued.id) == "not_pending"
    code, _, err = await millrace(database_url, redis_url, "jobs", "cancel", enqueued.id)
    assert code == 1
    assert "no pending job with this id" in err


async def test_job_a_worker_has_started_is_not_cancelled(client: JobClient, pool: Pool, redis_url: str) -> None:
    """The record still says queued (its start is not written yet), but arq marked it in progress."""
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    await client.redis.set(f"arq:in-progress:{enqueued.id}", b"1")
    assert await client.cancel(enqueued.id) == "running"
    async with pool.acquire() as conn:
        assert (await store.jobs.get_job(conn, enqueued.id)).status == "queued"
