"""Reconciliation: what Redis lost comes back from PostgreSQL's records, and nothing runs twice."""

from __future__ import annotations

import zlib
from datetime import timedelta

from arq.constants import job_key_prefix, result_key_prefix

from millrace import JobClient, NoArgs, Pool, store
from millrace.client import new_job
from millrace.reconcile import Reconciler, reconcile_queue
from tests.conftest import RunWorker, effects
from tests.sample import app

NOW_IS_QUIET = timedelta(0)


async def test_jobs_lost_in_a_redis_restart_are_queued_again_and_run_once(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    enqueued = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in range(5)]
    deferred = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), delay_s=0.2)
    await client.redis.flushdb()  # what a restart without persistence leaves
    restored = await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=NOW_IS_QUIET)
    assert restored == 6
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=NOW_IS_QUIET) == 0
    await run_worker()
    ran = [r["job_id"] for r in await effects(pool, "ran")]
    assert sorted(ran) == sorted([e.id for e in enqueued] + [deferred.id])


async def test_a_producer_that_died_before_its_push_loses_nothing(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    """The record is committed and the process dies before Redis hears of the job."""
    record = new_job(app.FLAKY, app.FlakyArgs(fail_times=0))
    await store.jobs.insert_jobs(pool, [record])
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=NOW_IS_QUIET) == 1
    await run_worker()
    assert [r["job_id"] for r in await effects(pool, "ran")] == [record.id]


async def test_jobs_still_in_redis_or_finished_are_not_pushed_again(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    done = await client.enqueue(app.NOOP, NoArgs())
    await run_worker()
    waiting = await client.enqueue(app.NOOP, NoArgs())
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=NOW_IS_QUIET) == 0
    assert (await store.jobs.get_job(pool, done.id)).status == "succeeded"
    assert await client.redis.zscore(app.TESTQ.redis_key, waiting.id) is not None


async def test_young_records_are_left_to_their_producer(client: JobClient, pool: Pool) -> None:
    await store.jobs.insert_jobs(pool, [new_job(app.NOOP, NoArgs())])
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=timedelta(seconds=60)) == 0


async def test_one_worker_of_a_queue_reconciles_at_a_time(client: JobClient, pool: Pool) -> None:
    await store.jobs.insert_jobs(pool, [new_job(app.NOOP, NoArgs())])
    reconciler = Reconciler(pool=pool, redis=client.redis, queue=app.TESTQ.name, interval_s=60, quiet_for_s=0)
    lock_id = zlib.crc32(f"millrace:reconcile:{app.TESTQ.name}".encode())
    async with pool.acquire() as other_worker:
        await other_worker.execute("SELECT pg_advisory_lock($1)", lock_id)
        assert await reconciler.run_once() == 0  # another worker's pass is under way
        await other_worker.execute("SELECT pg_advisory_unlock($1)", lock_id)
    assert await reconciler.run_once() == 1


async def test_a_result_arq_kept_for_a_pending_record_does_not_keep_the_job_out(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    """arq's own timeout cut an attempt short while PostgreSQL was away: arq stored a failed result and
    dropped the payload, the record stayed pending. The record decides: the job goes back and runs."""
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    await client.redis.delete(job_key_prefix + enqueued.id)
    await client.redis.zrem(app.TESTQ.redis_key, enqueued.id)
    await client.redis.set(result_key_prefix + enqueued.id, b"arq's failed result")
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=NOW_IS_QUIET) == 1
    await run_worker()
    assert [r["job_id"] for r in await effects(pool, "ran")] == [enqueued.id]
