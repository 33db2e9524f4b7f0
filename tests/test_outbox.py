"""Transactional enqueue: a rolled-back transaction enqueues nothing; a committed one exactly once."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
import redis.asyncio
import structlog
from arq.constants import job_key_prefix

from millrace import NoArgs, Pool, dispatch, relay, store
from millrace.client import JobClient
from millrace.reconcile import reconcile_queue
from millrace.relay import OutboxRelay
from tests.conftest import RunWorker, effects
from tests.processes import wait_for
from tests.sample import app
from tests.servers import PrivateRedis


class Rollback(Exception):
    pass


async def queued_ids(redis_url: str) -> list[bytes]:
    client = redis.asyncio.Redis.from_url(redis_url)
    ids: list[bytes] = await client.zrange(app.TESTQ.redis_key, 0, -1)
    await client.aclose()
    return ids


async def enqueue_then_roll_back(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), conn=conn)
        raise Rollback


async def test_rolled_back_transaction_enqueues_nothing(client: JobClient, pool: Pool, redis_url: str) -> None:
    with pytest.raises(Rollback):
        await enqueue_then_roll_back(client, pool)
    await relay.deliver_all(pool, client.redis, None)
    assert await store.jobs.list_jobs(pool) == []
    assert await store.outbox.count_entries(pool) == 0
    assert await queued_ids(redis_url) == []


async def test_committed_transaction_runs_the_job_exactly_once(
    client: JobClient, pool: Pool, redis_url: str, run_worker: RunWorker
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), conn=conn)
        assert enqueued.via == "outbox"
        assert await queued_ids(redis_url) == []  # nothing escapes before the commit
    assert await relay.deliver_all(pool, client.redis, None) == 1
    assert await relay.deliver_all(pool, client.redis, None) == 0
    assert await queued_ids(redis_url) == [enqueued.id.encode()]
    await run_worker()
    assert [r["job_id"] for r in await effects(pool, "ran")] == [enqueued.id]


async def test_relay_is_woken_by_the_commit_not_by_its_sweep(client: JobClient, pool: Pool, database_url: str) -> None:
    """With a 60 s sweep, only the NOTIFY sent at commit can deliver the job this soon (`make bench` times it)."""
    running = OutboxRelay(pool=pool, redis=client.redis, dsn=database_url, queues=["testq"], sweep_interval_s=60)
    running.start()
    await asyncio.sleep(0.2)  # listening
    try:
        async with pool.acquire() as conn, conn.transaction():
            enqueued = await client.enqueue(app.NOOP, NoArgs(), conn=conn)
        await wait_for(lambda: client.redis.exists(job_key_prefix + enqueued.id), timeout_s=10, what="delivery")
    finally:
        await running.close()


async def deliver_then_crash(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        entries = await store.outbox.claim_entries(conn, None, 10)
        await dispatch.push(client.redis, [dispatch.for_entry(e) for e in entries])
        raise Rollback  # the commit never happens


async def test_redelivery_after_a_relay_crash_is_dropped_by_redis(
    client: JobClient, pool: Pool, redis_url: str
) -> None:
    """The relay pushed to Redis, then died before its commit: the rows come back, the job does not double."""
    async with pool.acquire() as conn, conn.transaction():
        enqueued = await client.enqueue(app.NOOP, NoArgs(), conn=conn)
    with pytest.raises(Rollback):
        await deliver_then_crash(client, pool)
    assert await store.outbox.count_entries(pool) == 1
    assert await relay.deliver_all(pool, client.redis, None) == 1
    assert await queued_ids(redis_url) == [enqueued.id.encode()]


async def test_job_key_gives_one_pending_job(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    first = await client.enqueue(app.NOOP, NoArgs(), job_key="report:42")
    again = await client.enqueue(app.NOOP, NoArgs(), job_key="report:42")
    async with pool.acquire() as conn, conn.transaction():
        in_tx = await client.enqueue(app.NOOP, NoArgs(), job_key="report:42", conn=conn)
    assert (first.created, again.created, in_tx.created) == (True, False, False)
    assert first.id == again.id == in_tx.id
    await run_worker()
    after = await client.enqueue(app.NOOP, NoArgs(), job_key="report:42")  # done: the key is free again
    assert after.created
    assert after.id != first.id


async def test_delay_defers_the_job(client: JobClient, pool: Pool, redis_url: str) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs(), delay_s=60)
    async with pool.acquire() as conn:
        assert (await store.jobs.get_job(conn, enqueued.id)).status == "deferred"
    score = await client.redis.zscore(app.TESTQ.redis_key, enqueued.id)
    assert score is not None
    assert score / 1000 - time.time() > 55


async def test_redis_down_during_the_transaction_loses_nothing(
    pool: Pool, database_url: str, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        running = OutboxRelay(pool=pool, redis=client.redis, dsn=database_url, queues=["testq"], sweep_interval_s=0.2)
        running.start()
        private_redis.stop()
        async with pool.acquire() as conn, conn.transaction():
            enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), conn=conn)
        await asyncio.sleep(1.0)  # the relay tries, fails, keeps the row
        assert await store.outbox.count_entries(pool) == 1
        private_redis.start()
        for _ in range(100):
            if await store.outbox.count_entries(pool) == 0:
                break
            await asyncio.sleep(0.1)
        await running.close()
    await run_worker(redis_url=private_redis.url)
    assert [r["job_id"] for r in await effects(pool, "ran")] == [enqueued.id]


async def enqueue_during_the_outage_then_deliver(client: JobClient, pool: Pool, redis_server: PrivateRedis) -> str:
    """With Redis down, a direct enqueue goes to the outbox; once Redis is back, the relay delivers it."""
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    assert enqueued.via == "outbox"
    redis_server.start()
    assert await relay.deliver_all(pool, client.redis, None) == 1
    return enqueued.id


async def test_direct_enqueue_with_redis_down_is_handed_to_the_relay(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        private_redis.stop()
        job_id = await enqueue_during_the_outage_then_deliver(client, pool, private_redis)
    await run_worker(redis_url=private_redis.url)
    assert [r["job_id"] for r in await effects(pool, "ran")] == [job_id]


async def test_a_client_opens_while_redis_is_down_and_enqueues_through_the_outbox(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """A web process starting during a Redis outage still starts, and loses no job."""
    private_redis.stop()
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        job_id = await enqueue_during_the_outage_then_deliver(client, pool, private_redis)
    await run_worker(redis_url=private_redis.url)
    assert [r["job_id"] for r in await effects(pool, "ran")] == [job_id]


REFUSE_OUTBOX = """
    CREATE FUNCTION test_refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'the outbox is refused (a test fault)'; END $$;
    CREATE TRIGGER test_refuse_outbox BEFORE INSERT ON millrace_outbox
        FOR EACH ROW EXECUTE FUNCTION test_refuse_outbox();
"""
ALLOW_OUTBOX = "DROP TRIGGER test_refuse_outbox ON millrace_outbox; DROP FUNCTION test_refuse_outbox();"


async def test_a_job_neither_redis_nor_the_outbox_took_is_left_to_the_reconciler_not_failed(
    pool: Pool, private_redis: PrivateRedis, run_worker: RunWorker
) -> None:
    """Its record is written, then Redis and the outbox both fail: the caller must not be told to try
    again (a second job would run), and the reconciler pushes the queued record once Redis is back."""
    async with JobClient.open(redis_url=private_redis.url, pool=pool) as client:
        private_redis.stop()
        async with pool.acquire() as conn:
            await conn.execute(REFUSE_OUTBOX)
        try:
            with structlog.testing.capture_logs() as logs:
                enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
        finally:
            async with pool.acquire() as conn:
                await conn.execute(ALLOW_OUTBOX)
        assert enqueued.via == "outbox"
        assert [e["job_ids"] for e in logs if e["event"] == "job_left_to_the_reconciler"] == [[enqueued.id]]
        assert await store.outbox.count_entries(pool) == 0
        async with pool.acquire() as conn:
            assert (await store.jobs.get_job(conn, enqueued.id)).status == "queued"  # on record, not in Redis
        private_redis.start()
        quiet = timedelta(0)
        assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=quiet) == 1
    await run_worker(redis_url=private_redis.url)
    assert [r["job_id"] for r in await effects(pool, "ran")] == [enqueued.id]


async def test_a_relay_woken_as_it_is_closed_stops(client: JobClient, pool: Pool, database_url: str) -> None:
    """A NOTIFY that comes as the worker stops (a group's follow-up enqueued by its last finish) does not
    keep the relay going: on Python 3.11 asyncio.wait_for swallowed the cancel, and close() waited for ever."""
    running = OutboxRelay(pool=pool, redis=client.redis, dsn=database_url, queues=["testq"], sweep_interval_s=60)
    running.start()
    await asyncio.sleep(0.2)  # listening, waiting for a NOTIFY
    running._on_notify(None, 0, store.outbox.CHANNEL, "testq")  # type: ignore[arg-type]  # what the NOTIFY calls
    closing = asyncio.ensure_future(running.close())
    done, _ = await asyncio.wait({closing}, timeout=5)  # waits, cancels nothing (wait_for's cancel would end it)
    assert done, "close() still waiting for the relay"
