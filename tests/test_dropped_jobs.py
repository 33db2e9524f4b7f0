"""Jobs that arq gives up on before Millrace's wrapper runs: their records end dead, never pending for ever."""

from __future__ import annotations

import asyncio
import contextlib
import time

import arq.worker
import pytest
from arq.constants import job_key_prefix, retry_key_prefix

from millrace import JobClient, Pool, payload, store
from tests.conftest import RunWorker, sample_worker_settings
from tests.processes import wait_for
from tests.sample import app


async def make_due_now(client: JobClient, arq_job_id: str) -> None:
    await client.redis.zadd(app.TESTQ.redis_key, {arq_job_id: 1})


@pytest.mark.parametrize("payload_gone", ["deleted", "emptied"])
async def test_a_job_whose_payload_vanished_is_put_back_from_its_record_and_runs(
    client: JobClient, pool: Pool, run_worker: RunWorker, payload_gone: str
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    if payload_gone == "deleted":  # as when Redis evicts the key or loses it in a restart
        await client.redis.delete(job_key_prefix + enqueued.id)
    else:
        await client.redis.set(job_key_prefix + enqueued.id, b"")
    await run_worker()  # a burst worker may stop before the job is back: the next one runs it
    await run_worker()
    job = await store.jobs.get_job(pool, enqueued.id)
    assert job.status == "succeeded"
    assert [a.outcome for a in await store.jobs.list_attempts(pool, enqueued.id)] == ["succeeded"]


async def test_a_deferred_job_whose_payload_vanished_keeps_its_time(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), delay_s=3600)
    await client.redis.delete(job_key_prefix + enqueued.id)
    await make_due_now(client, enqueued.id)  # a stale entry: arq finds no payload behind it
    await run_worker()
    assert (await store.jobs.get_job(pool, enqueued.id)).status == "deferred"
    assert await client.redis.exists(job_key_prefix + enqueued.id)
    score = await client.redis.zscore(app.TESTQ.redis_key, enqueued.id)
    assert score is not None
    assert score > (time.time() + 3000) * 1000


async def test_a_job_past_arqs_try_limit_ends_dead(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    await client.redis.set(retry_key_prefix + enqueued.id, 5000)
    await run_worker()
    job = await store.jobs.get_job(pool, enqueued.id)
    assert (job.status, job.last_error_type) == ("dead", "JobDropped")
    assert "retries exceeded" in (job.last_error or "")


async def test_a_dropped_job_with_no_record_gets_one(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    """A job id planted in the queue with nothing behind it is put on record, dead, rather than vanish."""
    await make_due_now(client, "planted-id")
    await run_worker()
    job = await store.jobs.get_job(pool, "planted-id")
    assert (job.status, job.queue, job.last_error_type) == ("dead", "testq", "JobDropped")


async def test_a_finished_record_is_not_rewritten_by_a_later_drop(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    await run_worker()
    await client.redis.delete(job_key_prefix + enqueued.id)
    await make_due_now(client, enqueued.id)  # a stale queue entry for a job that already succeeded
    await run_worker()
    assert (await store.jobs.get_job(pool, enqueued.id)).status == "succeeded"


async def test_a_cron_job_under_an_id_arq_never_writes_ends_dead(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    bad_id = "cron:every_second:not-a-tick"
    await client.redis.set(job_key_prefix + bad_id, payload.serialize_job("cron:every_second", [], 1))
    await make_due_now(client, bad_id)
    # crons keep a burst worker busy for ever: run one for a moment instead
    worker = arq.worker.create_worker(
        sample_worker_settings(redis_url, database_url, with_crons=True), handle_signals=False
    )
    running = asyncio.create_task(worker.main())
    try:
        await wait_for(lambda: store.jobs.find_job(pool, bad_id), timeout_s=10, what="the planted cron job's record")
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        # a cron tick may be running: close() would cancel it and re-raise its CancelledError, skipping
        # the worker's shutdown; let it end first (no new job starts once main() has ended)
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await worker.close()
    job = await store.jobs.get_job(pool, bad_id)
    assert (job.status, job.last_error_type) == ("dead", "CorruptPayload")
