"""Priorities within a queue: a job's priority is seconds of head start in arq's order of due jobs, so an
urgent job passes a backlog, a job that waited longer than that head start still goes first (no job
starves), and the relay, the reaper and the reconciler keep the job's place when they push it again."""

from __future__ import annotations

import time

import pytest

from millrace import NoArgs, Pool, dispatch, payload, relay, store
from millrace.client import JobClient
from tests.conftest import RunWorker, effects
from tests.sample import app


async def due_order(client: JobClient) -> list[str]:
    """Record ids in the order arq's read takes the queue's due jobs."""
    ids = await client.redis.zrangebyscore(app.TESTQ.redis_key, "-inf", int(time.time() * 1000))
    return [payload.record_id_of(i.decode()) for i in ids]


async def test_an_urgent_job_passes_a_backlog_of_10000(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await client.enqueue_many(app.NOOP, [NoArgs()] * 10_000, conn=conn)
    assert await relay.deliver_all(pool, client.redis, None) == 10_000
    urgent = await client.enqueue(app.NOOP, NoArgs(), priority=60)
    order = await due_order(client)
    assert len(order) == 10_001
    assert order[0] == urgent.id


async def test_the_worker_starts_the_urgent_job_first(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    for _ in range(30):
        await client.enqueue(app.TENANT_WORK, app.TenantArgs(tenant="a", seconds=0))
    urgent = await client.enqueue(app.TENANT_WORK, app.TenantArgs(tenant="b", seconds=0), priority=60)
    await run_worker(concurrency={app.TESTQ.name: 1})
    starts = [e["job_id"] for e in await effects(pool, "start")]
    assert len(starts) == 31
    assert starts[0] == urgent.id


async def test_a_job_that_waited_longer_than_the_head_start_goes_first(client: JobClient) -> None:
    old = await client.enqueue(app.NOOP, NoArgs())
    time.sleep(1.5)  # noqa: ASYNC251  # the old job's wait, on the clock that scores it
    recent = await client.enqueue(app.NOOP, NoArgs())
    urgent = await client.enqueue(app.NOOP, NoArgs(), priority=1)
    assert await due_order(client) == [old.id, urgent.id, recent.id]


async def test_the_outbox_and_a_hand_on_keep_the_priority(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        later = await client.enqueue(app.NOOP, NoArgs(), conn=conn)
        urgent = await client.enqueue(app.NOOP, NoArgs(), conn=conn, priority=600)
    await relay.deliver_all(pool, client.redis, None)
    assert await due_order(client) == [urgent.id, later.id]
    # what the reconciler and the reaper push again comes from the record, priority included
    (entry,) = await store.jobs.list_still_pending(pool, [urgent.id])
    assert entry.priority == 600
    again = dispatch.for_entry(entry)
    assert again.delay_ms <= -600_000


async def test_a_deferred_job_keeps_its_time(client: JobClient) -> None:
    deferred = await client.enqueue(app.NOOP, NoArgs(), delay_s=60, priority=3600)
    score = await client.redis.zscore(app.TESTQ.redis_key, payload.redis_job_id(deferred.id, 0))
    assert score is not None
    assert score > time.time() * 1000 + 55_000  # not due before its time, however urgent


@pytest.mark.parametrize("priority", [True, 1.5, 86_401, -1])
async def test_a_priority_is_whole_seconds_within_a_day(client: JobClient, priority: object) -> None:
    with pytest.raises(ValueError, match="priority"):
        await client.enqueue(app.NOOP, NoArgs(), priority=priority)  # type: ignore[arg-type]
