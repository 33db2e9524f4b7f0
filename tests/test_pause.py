"""A paused queue's worker takes no new job, spends no attempt, and runs them all once resumed."""

from __future__ import annotations

import asyncio

import arq.worker

from millrace import NoArgs, Pool, operations, store
from millrace.client import JobClient
from tests.conftest import sample_worker_settings
from tests.processes import wait_for
from tests.sample import app


async def test_a_paused_queue_waits_and_a_resumed_one_runs(
    client: JobClient, pool: Pool, redis_url: str, database_url: str
) -> None:
    assert await operations.pause_queue(client, app.TESTQ.name, actor="tester")
    assert not await operations.pause_queue(client, app.TESTQ.name, actor="tester")  # paused already
    settings = sample_worker_settings(redis_url, database_url, heartbeat_interval_s=0.2)
    worker = arq.worker.create_worker(settings, burst=False, handle_signals=False)
    task = asyncio.create_task(worker.main())
    try:
        enqueued = [await client.enqueue(app.NOOP, NoArgs()) for _ in range(3)]
        await asyncio.sleep(2.0)
        async with pool.acquire() as conn:
            held = [await store.jobs.get_job(conn, e.id) for e in enqueued]
        assert {(j.status, j.attempts) for j in held} == {("queued", 0)}

        assert await operations.resume_queue(client, app.TESTQ.name, actor="tester")

        async def all_done() -> bool:
            async with pool.acquire() as conn:
                jobs = [await store.jobs.get_job(conn, e.id) for e in enqueued]
            return all(j.status == "succeeded" and j.attempts == 1 for j in jobs)

        # heard within a heartbeat; the held jobs come back within RECHECK_MIN_S (jittered)
        await wait_for(all_done, timeout_s=10, what="the resumed queue to run its jobs")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()
    async with pool.acquire() as conn:
        actions = [(e.action, e.actor, e.affected) for e in await store.insights.audit_log(conn)]
    assert actions == [
        ("resume_queue", "tester", 1),
        ("pause_queue", "tester", 0),
        ("pause_queue", "tester", 1),
    ]
