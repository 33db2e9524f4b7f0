"""Jobs that arq gives up on before Millrace's wrapper runs: their records end dead, never pending for ever."""

from __future__ import annotations

import pytest
from arq.constants import job_key_prefix, retry_key_prefix

from millrace import JobClient, Pool, store
from tests.conftest import RunWorker
from tests.sample import app


async def make_due_now(client: JobClient, arq_job_id: str) -> None:
    await client.redis.zadd(app.TESTQ.redis_key, {arq_job_id: 1})


@pytest.mark.parametrize("payload_gone", ["deleted", "emptied"])
async def test_a_job_whose_payload_vanished_ends_dead_with_the_reason(
    client: JobClient, pool: Pool, run_worker: RunWorker, payload_gone: str
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), delay_s=3600)
    if payload_gone == "deleted":  # as when Redis evicts the key or loses it in a restart
        await client.redis.delete(job_key_prefix + enqueued.id)
    else:
        await client.redis.set(job_key_prefix + enqueued.id, b"")
    await make_due_now(client, enqueued.id)
    await run_worker()
    job = await store.jobs.get_job(pool, enqueued.id)
    assert (job.status, job.last_error_type) == ("dead", "JobDropped")
    assert "job expired" in (job.last_error or "")
    assert [a.outcome for a in await store.jobs.list_attempts(pool, enqueued.id)] == ["dead"]


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
