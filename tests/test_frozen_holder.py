"""A worker frozen inside a guarded transaction (a VM pause, a long GC, a blocked loop) holds its job's row.
Nothing else waits for it: the reaper hands the other dead workers' jobs on at once and takes the held one
as soon as it is let go; a claim of the held job is refused at once; the frozen worker's late finish is
fenced off by the lease. Every statement has PostgreSQL's own bound."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import pytest

from millrace import JobClient, NoArgs, Pool, store
from millrace.records import AttemptFinished, Claimed, ClaimRequest
from millrace.store.workers import WorkerRow
from tests.sample import app
from tests.test_stranded_jobs import a_worker

#: far above what a statement that waits for no lock takes on a loaded machine, far below a freeze
NO_WAIT_BOUND_S = 10.0


async def a_silent_worker(pool: Pool, worker_id: str) -> None:
    row = WorkerRow(
        id=worker_id,
        queue=app.TESTQ.name,
        host="h",
        pid=1,
        version="t",
        lock_key=abs(hash(worker_id)) % 2**31,
        heartbeat_interval_s=0.01,
        silent_after_s=0.02,
    )
    await store.workers.register(pool, row)


async def claim_for(pool: Pool, job_id: str, worker: str) -> Claimed | None:
    request = ClaimRequest(
        job_id=job_id,
        queue=app.TESTQ.name,
        function=app.NOOP.name,
        args={},
        enqueued_at=datetime.now(UTC),
        worker=worker,
    )
    return (await store.attempts.claim(pool, [request])).get(job_id)


async def lock_waiters(pool: Pool) -> int:
    waiting: int = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return waiting


async def test_a_frozen_holder_stalls_neither_the_reaper_nor_claims_and_its_late_finish_is_fenced_off(
    client: JobClient, pool: Pool, database_url: str
) -> None:
    killed = [(await client.enqueue(app.NOOP, NoArgs())).id for _ in range(2)]
    frozen_held, frozen_idle = [(await client.enqueue(app.NOOP, NoArgs())).id for _ in range(2)]
    await a_silent_worker(pool, "killed")
    await a_silent_worker(pool, "frozen")
    for job_id in killed:
        assert await claim_for(pool, job_id, "killed") is not None
    held_claim = await claim_for(pool, frozen_held, "frozen")
    assert held_claim is not None
    assert await claim_for(pool, frozen_idle, "frozen") is not None

    # the frozen worker's guarded transaction: ctx.first_time took its job's row, then the process stopped
    holder = await store.pool.connect(database_url)
    guarded = holder.transaction()
    await guarded.start()
    assert await store.attempts.hold_lease(holder, frozen_held, held_claim.lease)

    reaper = a_worker(client, database_url, heartbeat_interval_s=0.05, silent_after_s=0.1)
    try:
        await reaper.beat_once()  # starts its health
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(reaper.beat_once(), NO_WAIT_BOUND_S)  # judges, waiting for no lock
        beat_s = time.monotonic() - started
        assert reaper.reaped == 3, "the killed worker's two jobs and the frozen one's idle job"
        assert (await store.jobs.get_job(pool, frozen_held)).status == "in_progress"
        assert await lock_waiters(pool) == 0

        # a live worker's copy of the held job is refused at once, not queued behind the freeze
        started = time.monotonic()
        assert await asyncio.wait_for(claim_for(pool, frozen_held, reaper.worker_id), NO_WAIT_BOUND_S) is None
        claim_s = time.monotonic() - started

        await guarded.rollback()  # the freeze ends without the effect (or PostgreSQL ended the session)
        await reaper.beat_once()
        assert reaper.reaped == 4, "the held job is handed on as soon as its row is let go"
    finally:
        await reaper.close()
        await holder.close()

    late = AttemptFinished(
        job_id=frozen_held,
        attempt=held_claim.attempt,
        lease=held_claim.lease,
        outcome="succeeded",
        status="succeeded",
        finished_at=datetime.now(UTC),
        duration_ms=1.0,
    )
    assert await store.attempts.finish(pool, [late]) == set(), "the frozen worker's late finish is fenced off"
    assert (await store.jobs.get_job(pool, frozen_held)).status == "queued"
    print(f"judging beat {beat_s * 1000:.0f} ms, refused claim {claim_s * 1000:.0f} ms")


async def test_postgresql_itself_ends_a_statement_past_its_bound(database_url: str) -> None:
    conn = await store.pool.connect(database_url, statement_timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < NO_WAIT_BOUND_S
        assert await conn.fetchval("SELECT 1") == 1, "the connection stays usable"
    finally:
        await conn.close()


async def test_pools_and_connections_are_bounded_by_default(pool: Pool, database_url: str) -> None:
    bounded = await store.pool.create_pool(database_url, max_size=1)
    try:
        assert await bounded.fetchval("SHOW statement_timeout") == "1min"
    finally:
        await bounded.close()
    conn = await store.pool.connect(database_url)
    try:
        assert await conn.fetchval("SHOW statement_timeout") == "1min"
    finally:
        await conn.close()


async def test_a_transaction_left_idle_past_the_bound_is_ended_and_its_locks_freed(
    client: JobClient, pool: Pool, database_url: str
) -> None:
    """A process frozen inside its guarded transaction: PostgreSQL ends the session, the row is free."""
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    frozen = await store.pool.connect(database_url, statement_timeout_s=0.3)
    try:
        guarded = frozen.transaction()
        await guarded.start()
        await frozen.execute("SELECT 1 FROM millrace_jobs WHERE id = $1 FOR SHARE", enqueued.id)
        await asyncio.sleep(1.5)  # frozen
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
            await frozen.execute("SELECT 1")
    finally:
        await frozen.close()
    await a_silent_worker(pool, "taker")
    # the row is free again: taken at once, not after the freeze
    assert await asyncio.wait_for(claim_for(pool, enqueued.id, "taker"), NO_WAIT_BOUND_S) is not None
