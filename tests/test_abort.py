"""Aborting a job: a running one is cancelled by its worker at the next heartbeat and ends `cancelled`,
with its attempt `aborted` and none of what its body had still to do done; a pending one is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import arq.worker
import pytest

from millrace import NoArgs, Pool, operations, store
from millrace.client import JobClient
from tests.conftest import attempt_outcomes, effects, sample_worker_settings
from tests.processes import wait_for
from tests.sample import app


@pytest.fixture
async def worker(redis_url: str, database_url: str) -> AsyncIterator[None]:
    settings = sample_worker_settings(redis_url, database_url, heartbeat_interval_s=0.2)
    running = arq.worker.create_worker(settings, burst=False, handle_signals=False)
    task = asyncio.create_task(running.main())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await running.close()


async def status_of(pool: Pool, job_id: str) -> str:
    async with pool.acquire() as conn:
        return (await store.jobs.get_job(conn, job_id)).status


async def test_a_running_job_is_aborted_and_its_worker_goes_on(client: JobClient, pool: Pool, worker: None) -> None:
    enqueued = await client.enqueue(app.GUARDED, app.SleepArgs(seconds=20))

    async def started() -> bool:
        return [e["kind"] for e in await effects(pool)] == ["start"]

    await wait_for(started, timeout_s=10, what="the job to start")
    assert await operations.abort(client, enqueued.id, actor="tester") == "aborting"

    async def cancelled() -> bool:
        return await status_of(pool, enqueued.id) == "cancelled"

    await wait_for(cancelled, timeout_s=5, what="the worker to abort the job at its next heartbeat")
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
        guarded = await conn.fetchval("SELECT count(*) FROM test_guarded_effects WHERE job_id = $1", enqueued.id)
        audit = [(e.action, e.actor, e.affected) for e in await store.insights.audit_log(conn)]
    assert job.finished_at is not None
    assert attempt_outcomes(attempts) == ["aborted"]
    assert attempts[0].error_type == "Aborted"
    assert guarded == 0
    assert audit == [("abort_job", "tester", 1)]

    after = await client.enqueue(app.NOOP, NoArgs())  # the worker goes on with other jobs

    async def ran() -> bool:
        return await status_of(pool, after.id) == "succeeded"

    await wait_for(ran, timeout_s=10, what="the worker to run the next job")
    await asyncio.sleep(0.6)  # a few more heartbeats: the aborted job does not start again
    assert [e["kind"] for e in await effects(pool) if e["job_id"] == enqueued.id] == ["start"]
    assert await client.abort(enqueued.id) == "not_pending"


async def test_a_pending_job_is_cancelled_instead(client: JobClient, pool: Pool) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs(), delay_s=60)
    assert await client.abort(enqueued.id) == "cancelled"
    assert await status_of(pool, enqueued.id) == "cancelled"
    assert await client.abort("no-such-job") == "not_pending"


async def test_an_abort_asked_for_outlives_the_worker_that_ran_the_job(client: JobClient, pool: Pool) -> None:
    """The worker dies before it hears the abort: the reaper ends the job cancelled, never hands it on."""
    enqueued = await client.enqueue(app.NOOP, NoArgs(), delay_s=60)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE millrace_jobs SET status = 'in_progress', worker = 'gone:1:testq:x', attempts = 1 WHERE id = $1",
            enqueued.id,
        )
        await conn.execute(
            """INSERT INTO millrace_job_attempts (job_id, attempt, worker, started_at)
               VALUES ($1, 1, 'gone:1:testq:x', now())""",
            enqueued.id,
        )
    assert await client.abort(enqueued.id) == "aborting"
    async with pool.acquire() as conn:
        await store.workers.register(
            conn,
            store.workers.WorkerRow(
                id="reaper:1:testq:y",
                queue="testq",
                host="reaper",
                pid=1,
                version="test",
                lock_key=1,
                heartbeat_interval_s=1,
                silent_after_s=10,
            ),
        )
        reaped = await store.workers.reap(conn, "reaper:1:testq:y", running=[])
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert reaped.jobs == []  # nothing to put back in Redis
    assert job.status == "cancelled"
    assert attempt_outcomes(attempts) == ["lost"]
    assert "abort" in (attempts[0].error_message or "")
