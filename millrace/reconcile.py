"""Reconciliation: PostgreSQL knows every pending job; what Redis lost is put back in its queue.

Redis loses jobs when it restarts without persistence, when it evicts keys under memory pressure, when
a job waits past arq's expiry of its payload (a day), or when a producer dies between writing the
record and pushing the job. Each pass walks a queue's pending records that have been quiet for a
while, asks Redis which of their jobs it still holds, and pushes the missing ones again.

Never twice: a job still in Redis (waiting, deferred or running) is not pushed (the dispatch script
checks, atomically); and a record is read again just before the push, because a finished job's record
is final before arq deletes its payload. A result arq kept for a job whose record is still pending is
arq's own verdict (its timeout cut the attempt short while PostgreSQL was away, say): the record decides,
and the job goes back. Its claim refuses it, should it have finished after all.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from datetime import timedelta

import structlog
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from millrace import dispatch, payload, store
from millrace.outages import OUTAGES
from millrace.records import OutboxEntry
from millrace.store.pool import Pool

log = structlog.get_logger(__name__)

_PAGE = 1000


async def reconcile_queue(pool: Pool, redis: ArqRedis, queue: str, *, quiet_for: timedelta) -> int:
    """One pass over `queue`; returns how many jobs were put back in Redis."""
    restored = 0
    after_id = ""
    while True:
        async with pool.acquire() as conn:
            page = await store.jobs.list_pending_quiet_since(
                conn, queue, quiet_for=quiet_for, after_id=after_id, limit=_PAGE
            )
        if not page:
            return restored
        after_id = page[-1].job_id
        restored += await _restore_missing(pool, redis, page)


async def _restore_missing(pool: Pool, redis: ArqRedis, page: list[OutboxEntry]) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for entry in page:
            pipe.exists(job_key_prefix + payload.redis_job_id(entry.job_id, entry.attempt_base))
        held = await pipe.execute()
    missing = [entry.job_id for entry, present in zip(page, held, strict=True) if not present]
    if not missing:
        return 0
    async with pool.acquire() as conn:
        still_pending = await store.jobs.list_still_pending(conn, missing)
    # still pending in PostgreSQL, gone from Redis: a result arq kept is stale (arq gave up on the job itself)
    created = await dispatch.push(redis, [dispatch.for_entry(e) for e in still_pending], over_results=True)
    restored = sum(created)
    if restored:
        log.warning("jobs_restored_to_redis", queue=page[0].queue, jobs=restored)
    return restored


async def count_group_children(pool: Pool) -> int:
    """Count the group children whose end was recorded outside a worker's finish (dropped as corrupt,
    say): a group waits for no child forever. Returns the follow-ups enqueued."""
    async with pool.acquire() as conn:
        ended = await store.groups.list_uncounted_ended(conn)
        if not ended:
            return 0
        async with conn.transaction():
            return await store.groups.count_ended(conn, ended)


class Reconciler:
    """Runs a pass every `interval_s` (jittered); one worker of a queue at a time, by an advisory lock."""

    def __init__(self, *, pool: Pool, redis: ArqRedis, queue: str, interval_s: float, quiet_for_s: float) -> None:
        self._pool = pool
        self._redis = redis
        self._queue = queue
        self._interval_s = interval_s
        self._quiet_for = timedelta(seconds=quiet_for_s)
        self._task: asyncio.Task[None] | None = None
        self.restored = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="millrace-reconciler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run_once(self) -> int:
        """A pass, unless another worker of the queue is in one; returns how many jobs it put back."""
        lock_id = zlib.crc32(f"millrace:reconcile:{self._queue}".encode())
        # transaction-scoped: however the pass ends, the lock ends with it (the pool resets no session)
        async with self._pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", lock_id):
                return 0
            restored = await reconcile_queue(self._pool, self._redis, self._queue, quiet_for=self._quiet_for)
            await count_group_children(self._pool)
        self.restored += restored
        return restored

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except OUTAGES as error:  # Redis or PostgreSQL away: the next pass tries again
                log.warning("reconciliation_failed", queue=self._queue, error=repr(error))
            # jittered, so that the workers of a queue do not all wake at once
            await asyncio.sleep(self._interval_s * random.uniform(0.8, 1.2))
