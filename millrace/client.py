"""JobClient: what a web app opens once for its lifetime to enqueue jobs, directly or transactionally."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import structlog
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

import db.jobs
import db.outbox
import db.pool
from db.jobs import NewJob
from db.pool import Connection, Pool
from millrace import dispatch, payload
from millrace.declare import JobArgs, JobRef
from millrace.queues import REDIS_QUEUE_PREFIX

A = TypeVar("A", bound=JobArgs)
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueuedJob:
    id: str
    #: False when a job with the same job key was already pending: `id` is that job's
    created: bool
    #: "redis": in the queue now; "outbox": delivered by the relay once the transaction commits
    via: Literal["redis", "outbox"]


class _StartedMeanwhile(Exception):
    pass


class JobClient:
    """Enqueues jobs. Cheap to share: one per process, opened at start-up, closed at shutdown.

    `enqueue(..., conn=tx)` writes the job inside the caller's open transaction (the outbox): it is
    delivered only if that transaction commits, and it survives Redis being down meanwhile.
    """

    def __init__(self, *, redis: ArqRedis, pool: Pool) -> None:
        self.redis = redis
        self.pool = pool

    @classmethod
    @asynccontextmanager
    async def open(
        cls, *, redis_url: str, database_url: str | None = None, pool: Pool | None = None
    ) -> AsyncIterator[JobClient]:
        """Open Redis, and PostgreSQL unless the app hands over the pool it already has."""
        if pool is None and database_url is None:
            raise ValueError("JobClient needs a database_url or an asyncpg pool")
        redis = await create_pool(RedisSettings.from_dsn(redis_url), job_serializer=payload.dumps,
                                  job_deserializer=payload.loads)  # fmt: skip
        own_pool = pool is None
        try:
            if pool is None:
                assert database_url is not None
                pool = await db.pool.create_pool(database_url)
            yield cls(redis=redis, pool=pool)
        finally:
            if own_pool and pool is not None:
                await pool.close()
            await redis.aclose()

    async def enqueue(
        self,
        ref: JobRef[A],
        args: A | Mapping[str, Any],
        *,
        conn: Connection | None = None,
        delay_s: float | None = None,
        run_at: datetime | None = None,
        job_key: str | None = None,
    ) -> EnqueuedJob:
        """Validate `args` (InvalidJobArguments names each bad field) and enqueue the job."""
        new = _new_job(ref, ref.validate(args), delay_s=delay_s, run_at=run_at, job_key=job_key)
        if conn is not None:
            job_id, created = await db.outbox.insert_job_with_outbox(conn, new)
            return EnqueuedJob(id=job_id, created=created, via="outbox")
        async with self.pool.acquire() as own:
            job_id, created = await db.jobs.insert_job(own, new)
        if not created:
            return EnqueuedJob(id=job_id, created=False, via="redis")
        return await self._push_or_hand_to_relay(ref, new)

    async def enqueue_many(
        self,
        ref: JobRef[A],
        many_args: Sequence[A | Mapping[str, Any]],
        *,
        conn: Connection,
        job_keys: Sequence[str | None] | None = None,
    ) -> int:
        """Enqueue a batch in one statement, inside `conn`'s transaction; returns how many were new.

        For work that fans out to thousands of jobs (a daily email to every user): one round trip a batch.
        """
        keys = list(job_keys) if job_keys is not None else [None] * len(many_args)
        if len(keys) != len(many_args):
            raise ValueError("give one job key (or None) per job")
        new = [_new_job(ref, ref.validate(args), delay_s=None, run_at=None, job_key=key)
               for args, key in zip(many_args, keys, strict=True)]  # fmt: skip
        return await db.outbox.insert_jobs_with_outbox(conn, new) if new else 0

    async def cancel(self, job_id: str) -> Literal["cancelled", "running", "not_pending"]:
        """Cancel a job that has not started yet, or that waits for its next attempt."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                job = await db.jobs.mark_cancelled(conn, job_id)
                if job is None:
                    return "not_pending"
                redis_id = payload.redis_job_id(job.id, job.attempt_base)
                if not await dispatch.remove_unstarted(self.redis, redis_id, REDIS_QUEUE_PREFIX + job.queue):
                    raise _StartedMeanwhile  # leaving the transaction by an exception undoes the cancel
        except _StartedMeanwhile:
            return "running"
        return "cancelled"

    async def _push_or_hand_to_relay(self, ref: JobRef[Any], new: NewJob) -> EnqueuedJob:
        try:
            await dispatch.push(self.redis, [dispatch_new(ref, new)])
        except (RedisError, OSError) as error:
            # the record is written: let the relay deliver it when Redis is back, rather than lose it
            log.warning("job_push_failed_handed_to_relay", job_id=new.id, error=repr(error))
            async with self.pool.acquire() as own:
                await db.outbox.insert_outbox_entry(own, new)
            return EnqueuedJob(id=new.id, created=True, via="outbox")
        return EnqueuedJob(id=new.id, created=True, via="redis")


def _new_job(ref: JobRef[A], args: A, *, delay_s: float | None, run_at: datetime | None, job_key: str | None) -> NewJob:
    if delay_s is not None and run_at is not None:
        raise ValueError("give delay_s or run_at, not both")
    now = datetime.now(UTC)
    if delay_s is not None:
        run_at = now + timedelta(seconds=delay_s)
    return NewJob(
        id=uuid.uuid4().hex,
        queue=ref.queue.name,
        function=ref.name,
        args=args.model_dump(mode="json"),
        job_key=job_key,
        run_at=run_at,
        enqueued_at=now,
    )


def dispatch_new(ref: JobRef[Any], new: NewJob) -> dispatch.Dispatch:
    now_ms = int(time.time() * 1000)
    envelope = payload.make_envelope(new.id, new.args, 0)
    return dispatch.dispatch_for(
        redis_job_id=new.id,
        queue_key=ref.queue.redis_key,
        payload=payload.serialize_job(ref.name, [envelope], int(new.enqueued_at.timestamp() * 1000)),
        score_ms=int(new.run_at.timestamp() * 1000) if new.run_at else now_ms,
        now_ms=now_ms,
    )
