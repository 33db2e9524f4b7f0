"""Jobs a dead worker started in Redis but never claimed in PostgreSQL are freed at once, not after
arq's in-progress timeout; nothing a live worker may still be claiming is touched."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix

from millrace import JobClient, NoArgs, Pool, store
from millrace.liveness import Liveness
from millrace.queues import redis_queue_key
from millrace.records import Claimed, ClaimRequest
from millrace.store.workers import WorkerRow
from tests.conftest import RunWorker
from tests.sample import app

IN_PROGRESS_TIMEOUT_S = 300.0
CLAIM_PATIENCE_S = 3.0
HEARTBEAT_S = 0.5


def a_worker(client: JobClient, database_url: str, *, heartbeat_interval_s: float, silent_after_s: float) -> Liveness:
    """The liveness of a worker of the sample queue that runs nothing."""
    return Liveness(
        dsn=database_url,
        redis=client.redis,
        worker_id=f"test:1:testq:{heartbeat_interval_s}",
        queue=app.TESTQ.name,
        heartbeat_interval_s=heartbeat_interval_s,
        silent_after_s=silent_after_s,
        running=lambda: (),
        jobs_done=lambda: 0,
        in_progress_timeout_s=IN_PROGRESS_TIMEOUT_S,
        claim_patience_s=CLAIM_PATIENCE_S,
    )


@pytest.fixture
async def liveness(client: JobClient, database_url: str) -> AsyncIterator[Liveness]:
    checker = a_worker(client, database_url, heartbeat_interval_s=HEARTBEAT_S, silent_after_s=3)
    await checker.start()
    yield checker
    await checker.close()


async def mark_started(client: JobClient, job_id: str, *, age_s: float) -> None:
    """What arq writes when a worker starts a job: an in-progress mark, living its timeout from then."""
    left_ms = int((IN_PROGRESS_TIMEOUT_S - age_s) * 1000)
    await client.redis.psetex(in_progress_key_prefix + job_id, left_ms, b"1")


async def test_an_old_mark_on_a_pending_job_is_freed_and_young_or_final_ones_are_kept(
    client: JobClient, pool: Pool, liveness: Liveness
) -> None:
    stranded = await client.enqueue(app.NOOP, NoArgs())
    just_started = await client.enqueue(app.NOOP, NoArgs())
    finished = await client.enqueue(app.NOOP, NoArgs())
    await pool.execute("UPDATE millrace_jobs SET status = 'succeeded' WHERE id = $1", finished.id)
    await mark_started(client, stranded.id, age_s=30)
    await mark_started(client, just_started.id, age_s=1)  # a live worker may be claiming it right now
    await mark_started(client, finished.id, age_s=30)

    assert await liveness.free_stranded() == 1

    assert not await client.redis.exists(in_progress_key_prefix + stranded.id)
    assert await client.redis.zscore(redis_queue_key(app.TESTQ.name), stranded.id) is not None
    assert await client.redis.exists(in_progress_key_prefix + just_started.id)
    assert await client.redis.exists(in_progress_key_prefix + finished.id)


async def test_a_mark_of_an_older_budget_or_another_queue_is_left_alone(
    client: JobClient, pool: Pool, liveness: Liveness
) -> None:
    retried = await client.enqueue(app.NOOP, NoArgs())
    # a dead-letter retry gave the job a new arq id; the old id's mark is not this record's run
    await pool.execute("UPDATE millrace_jobs SET attempt_base = 3 WHERE id = $1", retried.id)
    other_queue = await client.enqueue(app.NOOP, NoArgs())
    await pool.execute("UPDATE millrace_jobs SET queue = 'elsewhere' WHERE id = $1", other_queue.id)
    await mark_started(client, retried.id, age_s=30)
    await mark_started(client, other_queue.id, age_s=30)

    assert await liveness.free_stranded() == 0
    assert await client.redis.exists(in_progress_key_prefix + retried.id, in_progress_key_prefix + other_queue.id) == 2


async def test_a_dead_workers_job_whose_payload_redis_lost_is_rebuilt_whole_and_runs(
    client: JobClient, pool: Pool, database_url: str, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    ghost = WorkerRow(
        id="ghost",
        queue="testq",
        host="h",
        pid=1,
        version="t",
        lock_key=1,
        heartbeat_interval_s=0.01,
        silent_after_s=0.02,
    )
    await store.workers.register(pool, ghost)
    request = ClaimRequest(
        job_id=enqueued.id,
        queue="testq",
        function="flaky",
        args={"fail_times": 0},
        enqueued_at=datetime.now(UTC),
        worker="ghost",
    )
    assert isinstance((await store.attempts.claim(pool, [request]))[enqueued.id], Claimed)
    await client.redis.delete(job_key_prefix + enqueued.id)  # lost with the ghost's Redis, say
    reaper = a_worker(client, database_url, heartbeat_interval_s=0.01, silent_after_s=0.05)
    try:  # beats by hand, without the heartbeat task: the first starts its health, the second judges
        await reaper.beat_once()
        await asyncio.sleep(0.2)
        await reaper.beat_once()
    finally:
        await reaper.close()
    assert reaper.reaped == 1
    await run_worker()
    record = await store.jobs.get_job(pool, enqueued.id)
    assert (record.status, record.attempts) == ("succeeded", 2)
