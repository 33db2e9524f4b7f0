"""A direct enqueue answers within the client's bound whatever Redis does (paused, partitioned), its job
pushed or handed to the outbox, and the job runs once when Redis is back; cancel and retry_dead wait no
longer on Redis either."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from millrace import NoArgs, Pool, dispatch, relay, store
from millrace.client import ANSWER_WITHIN_S, EnqueuedJob, JobClient, new_job
from millrace.declare import JobRef
from millrace.queues import Queue
from millrace.reconcile import reconcile_queue
from tests.conftest import RunWorker, effects
from tests.netns import isolated_host
from tests.processes import wait_for
from tests.sample import app
from tests.servers import PrivateRedis

#: a queue with a backlog bound: its producers read Redis before they write anything
BOUNDED = Queue(name="bounded", concurrency=1, max_backlog=100)
BOUNDED_WORK = JobRef("bounded_work", BOUNDED, NoArgs)


@asynccontextmanager
async def paused(server: PrivateRedis, *, for_s: float = 5.0) -> AsyncIterator[None]:
    """Redis takes connections and commands, and answers none for `for_s` (CLIENT PAUSE ALL): longer than
    any answer the block waits for. Its exit waits for the pause to end (an UNPAUSE would wait too: Redis
    pauses every client's commands, the one that paused it included)."""
    admin = redis.asyncio.Redis.from_url(server.url)
    await admin.execute_command("CLIENT", "PAUSE", str(int(for_s * 1000)), "ALL")
    try:
        yield
    finally:
        await wait_for(admin.ping, timeout_s=for_s + 30, what="Redis at the end of its pause")
        await admin.aclose()


async def timed_enqueue(client: JobClient, *, after_s: float = 0.0) -> tuple[EnqueuedJob, float]:
    await asyncio.sleep(after_s)
    started = time.monotonic()
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    return enqueued, time.monotonic() - started


async def deliver_then_run(client: JobClient, pool: Pool, redis_url: str, run_worker: RunWorker) -> list[str]:
    """Redis is back: the relay delivers the outbox, a worker drains the queue; the ids of the jobs that ran."""
    await relay.deliver_all(pool, client.redis, None)
    await run_worker(redis_url=redis_url)
    return [r["job_id"] for r in await effects(pool, "ran")]


async def test_a_direct_enqueue_answers_within_the_bound_while_redis_is_paused(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """It waited as long as the pause (30 s in the issue's test) before; now it answers, its job in the outbox."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()  # connected: the push waits on a connection that hears nothing
        async with paused(private_redis):
            enqueued, answered_s = await timed_enqueue(client)
        assert answered_s < ANSWER_WITHIN_S
        assert enqueued.via == "outbox"
        ran = await deliver_then_run(client, pool, private_redis.url, run_worker)
    assert ran == [enqueued.id]
    assert [a.outcome for a in await store.jobs.list_attempts(pool, enqueued.id)] == ["succeeded"]


async def test_a_direct_enqueue_answers_within_the_bound_across_a_partition(
    pool: Pool, tmp_path: Path, run_worker: RunWorker
) -> None:
    """Redis on a test host cut off without a word: a push on the open connection, and the next one's
    connect, both go unanswered; each enqueue answers in time all the same."""
    with isolated_host() as host:
        server = PrivateRedis(tmp_path, host=host.address, wrap=host.wrap)
        server.start()
        try:
            async with JobClient.open(redis_url=server.url, pool=pool) as client:
                await client.redis.ping()
                host.cut_far_end()
                try:
                    on_open_connection, first_s = await timed_enqueue(client)
                    on_new_connect, second_s = await timed_enqueue(client)
                finally:
                    host.heal_far_end()
                assert max(first_s, second_s) < ANSWER_WITHIN_S, (first_s, second_s)
                assert (on_open_connection.via, on_new_connect.via) == ("outbox", "outbox")
                await wait_for(client.redis.ping, timeout_s=30, what="Redis across the healed link")
                ran = await deliver_then_run(client, pool, server.url, run_worker)
        finally:
            server.stop()
    assert sorted(ran) == sorted([on_open_connection.id, on_new_connect.id])


async def test_callers_batched_behind_a_paused_push_all_answer_within_the_bound(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """Callers that arrive while a batch waits on Redis wait for it, then go out in the next batch: each
    answers within the bound counted from its own call, not two bounds."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()
        async with paused(private_redis, for_s=6):
            waves = [timed_enqueue(client, after_s=wave * 0.5) for wave in range(3) for _ in range(20)]
            answers = await asyncio.gather(*waves)
        assert client.direct.batches_written >= 2  # the later waves waited behind the first batch
        slowest_s = max(answered_s for _, answered_s in answers)
        assert slowest_s < ANSWER_WITHIN_S
        assert {enqueued.via for enqueued, _ in answers} == {"outbox"}
        ran = await deliver_then_run(client, pool, private_redis.url, run_worker)
    assert sorted(ran) == sorted(enqueued.id for enqueued, _ in answers)


async def test_a_push_that_lands_late_beside_the_relays_delivery_runs_the_job_once(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """A push cut short may still be carried out by Redis; the relay's delivery and the reconciler's pass
    then find the job's arq id there (it is the record's), and a push after the job ran finds its result."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()
        async with paused(private_redis):
            enqueued, _ = await timed_enqueue(client)
        assert enqueued.via == "outbox"
        async with pool.acquire() as conn:
            [entry] = await store.jobs.list_still_pending(conn, [enqueued.id])
        late_push = [dispatch.for_entry(entry)]
        await dispatch.push(client.redis, late_push)  # as if the cut push had landed now
        assert await relay.deliver_all(pool, client.redis, None) == 1  # delivered: its row is gone
        assert await client.redis.zrange(app.TESTQ.redis_key, 0, -1) == [enqueued.id.encode()]
        assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=timedelta(0)) == 0
        await run_worker(redis_url=private_redis.url)
        assert await dispatch.push(client.redis, late_push) == [False]
        assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=timedelta(0)) == 0
        await run_worker(redis_url=private_redis.url)
    assert [r["job_id"] for r in await effects(pool, "ran")] == [enqueued.id]


LOCK_OUTBOX = "LOCK TABLE millrace_outbox IN ACCESS EXCLUSIVE MODE"


async def test_the_outbox_write_is_bounded_too_and_finishes_once_postgresql_can(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """Redis paused and the outbox held by another transaction: the caller answers in time, and the outbox
    row is written when the lock goes, for the relay to deliver."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()
        async with pool.acquire() as holder:
            locking = holder.transaction()
            await locking.start()
            await holder.execute(LOCK_OUTBOX)
            try:
                async with paused(private_redis):
                    enqueued, answered_s = await timed_enqueue(client)
            finally:
                await locking.commit()
        assert answered_s < ANSWER_WITHIN_S
        assert enqueued.via == "outbox"

        async def written() -> bool:
            return await store.outbox.count_entries(pool) == 1

        await wait_for(written, timeout_s=10, what="the outbox row, once the lock was gone")
        ran = await deliver_then_run(client, pool, private_redis.url, run_worker)
    assert ran == [enqueued.id]


async def test_cancel_answers_within_the_bound_and_changes_nothing_while_redis_is_paused(
    pool: Pool, private_redis: PrivateRedis
) -> None:
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        enqueued = await client.enqueue(app.NOOP, NoArgs())
        async with paused(private_redis):
            started = time.monotonic()
            with pytest.raises(RedisError):
                await client.cancel(enqueued.id)
            answered_s = time.monotonic() - started
        assert answered_s < ANSWER_WITHIN_S
        assert (await store.jobs.get_job(pool, enqueued.id)).status == "queued"
        assert await client.cancel(enqueued.id) == "cancelled"


async def test_retry_dead_answers_within_the_bound_and_leaves_delivery_to_the_relay(
    pool: Pool, private_redis: PrivateRedis
) -> None:
    dead = new_job(app.NOOP, NoArgs())
    await store.jobs.insert_jobs(pool, [dead])
    await pool.execute("UPDATE millrace_jobs SET status = 'dead', finished_at = now() WHERE id = $1", dead.id)
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()
        async with paused(private_redis):
            started = time.monotonic()
            retried = await client.retry_dead([dead.id])
            answered_s = time.monotonic() - started
        assert answered_s < ANSWER_WITHIN_S
        assert (retried.requeued, retried.delivered) == ([dead.id], 0)
        assert await relay.deliver_all(pool, client.redis, None) == 1


async def test_a_producer_of_a_bounded_queue_is_not_held_by_a_paused_backlog_read(
    pool: Pool, private_redis: PrivateRedis
) -> None:
    """The backlog read comes first: unanswered, it counts as Redis away, and the job is taken."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        await client.redis.ping()
        async with paused(private_redis):
            started = time.monotonic()
            direct = await client.enqueue(BOUNDED_WORK, NoArgs())
            direct_s = time.monotonic() - started
            started = time.monotonic()
            async with pool.acquire() as conn, conn.transaction():
                many = await client.enqueue_many(BOUNDED_WORK, [NoArgs(), NoArgs()], conn=conn)
            many_s = time.monotonic() - started
        assert max(direct_s, many_s) < ANSWER_WITHIN_S, (direct_s, many_s)
        assert (direct.via, many) == ("outbox", 2)
