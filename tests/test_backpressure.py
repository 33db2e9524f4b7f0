"""Backpressure: a queue with a max_backlog refuses producers while Redis holds that many of its jobs,
writes nothing for a refused job, lets a producer wait for room, and takes jobs while Redis is away."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from millrace import JobClient, NoArgs, Pool, QueueFull
from millrace.declare import JobRef
from millrace.queues import Queue

BOUNDED = Queue(name="bounded", concurrency=1, max_backlog=3)
WORK = JobRef("bounded_work", BOUNDED, NoArgs)


async def records(pool: Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM millrace_jobs WHERE queue = 'bounded'")
    return count


async def test_a_full_queue_refuses_the_job_and_writes_nothing(client: JobClient, pool: Pool) -> None:
    for _ in range(3):
        await client.enqueue(WORK, NoArgs())
    with pytest.raises(QueueFull) as refused:
        await client.enqueue(WORK, NoArgs())
    assert (refused.value.queue, refused.value.backlog, refused.value.max_backlog) == ("bounded", 3, 3)
    assert refused.value.retry_after_s > 0
    async with client.pool.acquire() as conn, conn.transaction():
        with pytest.raises(QueueFull):
            await client.enqueue(WORK, NoArgs(), conn=conn)
        with pytest.raises(QueueFull):
            await client.enqueue_many(WORK, [NoArgs()], conn=conn)
    assert await records(pool) == 3


async def test_a_producer_may_wait_for_room(client: JobClient, pool: Pool) -> None:
    first = [await client.enqueue(WORK, NoArgs()) for _ in range(3)]
    waiting = asyncio.create_task(client.enqueue(WORK, NoArgs(), wait_for_room_s=10))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    assert await client.cancel(first[0].id) == "cancelled"  # a worker taking a job would do the same
    enqueued = await asyncio.wait_for(waiting, timeout=5)
    assert enqueued.created
    assert await records(pool) == 4


async def test_a_batch_counts_whole(client: JobClient) -> None:
    await client.enqueue(WORK, NoArgs())
    async with client.pool.acquire() as conn, conn.transaction():
        with pytest.raises(QueueFull):
            await client.enqueue_many(WORK, [NoArgs()] * 3, conn=conn)
        assert await client.enqueue_many(WORK, [NoArgs()] * 2, conn=conn) == 2


def test_a_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_backlog"):
        Queue(name="q", concurrency=1, max_backlog=0)


async def test_while_redis_is_away_jobs_are_taken_into_the_outbox(pool: Pool) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with JobClient.open(redis_url=f"redis://127.0.0.1:{port}", pool=pool) as away:
        enqueued = [await away.enqueue(WORK, NoArgs(), job_key=uuid.uuid4().hex) for _ in range(5)]
    assert {e.via for e in enqueued} == {"outbox"}
    assert await records(pool) == 5
