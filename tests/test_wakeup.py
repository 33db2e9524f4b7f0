"""An idle worker waits for a producer's token, not for its next poll: a job starts as soon as it is
enqueued, a deferred one when it falls due, and tokens nobody waited for do not pile up."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator

import arq.worker
import pytest
import redis.asyncio

from millrace import NoArgs, Pool, store, wakeup
from millrace.client import JobClient
from millrace.relay import deliver_all
from tests.conftest import sample_worker_settings
from tests.processes import wait_for
from tests.sample import app

#: far longer than any test waits: a job that started, started because of its token
LONG_IDLE_WAIT_S = 60.0


@pytest.fixture
async def waiting_worker(redis_url: str, database_url: str) -> AsyncIterator[None]:
    settings = sample_worker_settings(redis_url, database_url, idle_wait_s=LONG_IDLE_WAIT_S)
    worker = arq.worker.create_worker(settings, burst=False, handle_signals=False)
    task = asyncio.create_task(worker.main())
    await asyncio.sleep(1.0)  # started, and waiting in its read of the queue
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()


async def succeeded(pool: Pool, job_id: str) -> bool:
    async with pool.acquire() as conn:
        return (await store.jobs.get_job(conn, job_id)).status == "succeeded"


async def test_a_job_enqueued_while_the_worker_idles_starts_at_once(
    client: JobClient, pool: Pool, waiting_worker: None
) -> None:
    for _ in range(3):  # each time the worker waits anew, and each time a token wakes it
        enqueued = await client.enqueue(app.NOOP, NoArgs())
        ran = functools.partial(succeeded, pool, enqueued.id)
        await wait_for(ran, timeout_s=10, what="the token to wake the worker")


async def test_a_deferred_job_starts_when_it_falls_due(client: JobClient, pool: Pool, waiting_worker: None) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs(), delay_s=1.5)
    started = time.monotonic()
    await wait_for(lambda: succeeded(pool, enqueued.id), timeout_s=10, what="the deferred job to run when due")
    assert time.monotonic() - started >= 1.0  # not before it was due


async def test_tokens_nobody_waits_for_stay_bounded(client: JobClient, redis_url: str, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await client.enqueue_many(app.NOOP, [NoArgs()] * 600, conn=conn)
    await client.enqueue(app.NOOP, NoArgs())  # direct, as well as through the relay below
    await deliver_all(pool, client.redis, [app.TESTQ.name])
    async with redis.asyncio.Redis.from_url(redis_url) as plain:
        tokens = await plain.llen(wakeup.wake_key(app.TESTQ.redis_key))
        queued = await plain.zcard(app.TESTQ.redis_key)
    assert queued == 601
    assert 0 < tokens <= wakeup.MAX_TOKENS
