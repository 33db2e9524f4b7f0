"""JobClient: what a web app opens once for its lifetime to enqueue jobs, and to cancel or retry them."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import asyncpg
import structlog
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from millrace import backpressure, dispatch, payload, store, tracing
from millrace.clock import CLOCK
from millrace.declare import JobArgs, JobRef
from millrace.group_commit import GroupCommit
from millrace.records import GroupStatus, JobRecord, NewJob, OutboxEntry
from millrace.relay import deliver_batch
from millrace.store.pool import TRANSIENT_ERRORS, Connection, Pool
from millrace.text import unstorable_text

A = TypeVar("A", bound=JobArgs)
B = TypeVar("B", bound=JobArgs)
log = structlog.get_logger(__name__)

#: how far ahead a job may be scheduled; beyond it a delay is a mistake (and overflows dates)
MAX_DELAY = timedelta(days=366)
#: the longest head start: a day lets urgent work pass a day's backlog, and bounds how long a normal job
#: can be passed by others. No negative one: a score in the future would hold a job back on an idle queue
MAX_PRIORITY_S = 24 * 3600
#: the longest a caller waits on Redis through a JobClient (`JobClient.open(answer_within_s=...)`). A direct
#: enqueue answers within it whatever Redis does (a pause, a partition, a connect that never completes): its job
#: pushed, or handed to the outbox, never an error once its record is written. `cancel`, `abort` and
#: `retry_dead` wait no longer on Redis either, nor does any other call through `client.redis` on one reply
#: (the client's socket timeouts). PostgreSQL's part before a job is on record is not bounded here: an answer
#: cut short there could not say whether the job was written
ANSWER_WITHIN_S = 2.0
#: of a direct enqueue's bound, the share kept for handing the job to the outbox once Redis has not answered
_OUTBOX_SHARE = 0.25
#: kept back from the bound for handing the answer to its caller: waking it, on a loaded machine
_ANSWER_MARGIN_S = 0.05
#: a job key is an identifier (an event id, "report:2026-12-05"), not a document; this keeps it well inside
#: PostgreSQL's limit for an index entry (2,704 bytes) whatever its characters
MAX_JOB_KEY_CHARS = 500
#: a job key that a pending job holds and frees again at once: give up after this many tries
_KEY_RACE_TRIES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueuedJob:
    id: str
    #: False when a job with the same job key was already pending: `id` is that job's
    created: bool
    #: "redis": in the queue now; "outbox": on record, delivered later: by the relay once the transaction
    #: commits (or once Redis is back), or by the reconciler if the outbox could not be written either
    via: Literal["redis", "outbox"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueuedGroup:
    id: str
    #: the children's job ids, in the order of their arguments
    children: list[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadRetried:
    #: the dead jobs given a fresh budget of attempts
    requeued: list[str]
    #: how many of them are in Redis now; the rest wait in the outbox for a worker's relay
    delivered: int


class _StartedMeanwhile(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class _Direct:
    """A direct enqueue waiting for its batch: the job, and the loop's time by which its caller has its answer."""

    new: NewJob
    answer_by: float


class JobClient:
    """Enqueues jobs. Cheap to share: one per process, opened at start-up, closed at shutdown.

    `enqueue(..., conn=tx)` writes the job inside the caller's open transaction (the outbox): it is
    delivered only if that transaction commits, and it survives Redis being down meanwhile.
    """

    def __init__(self, *, redis: ArqRedis, pool: Pool, answer_within_s: float = ANSWER_WITHIN_S) -> None:
        if not answer_within_s > 0:  # NaN fails this too
            raise ValueError("answer_within_s must be a positive number of seconds")
        self.redis = redis
        self.pool = pool
        self.answer_within_s = answer_within_s
        #: direct enqueues from concurrent callers: one INSERT and one Redis call a batch
        self.direct = GroupCommit(self._write_direct)
        #: outbox writes for jobs Redis did not take, still going on after their callers had their answer
        self._handoffs: set[asyncio.Task[None]] = set()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        redis_url: str,
        database_url: str | None = None,
        pool: Pool | None = None,
        answer_within_s: float = ANSWER_WITHIN_S,
    ) -> AsyncIterator[JobClient]:
        """Open Redis, and PostgreSQL unless the app hands over the pool it already has.

        Redis is connected lazily: a web process starts while Redis is down, and its jobs go through
        the outbox until Redis is back. `answer_within_s` bounds every wait on Redis (see ANSWER_WITHIN_S):
        a direct enqueue answers within it whatever Redis does.
        """
        if pool is None and database_url is None:
            raise ValueError("JobClient needs a database_url or an asyncpg pool")
        if not answer_within_s > 0:
            raise ValueError("answer_within_s must be a positive number of seconds")
        # the socket timeouts bound each connect and each reply of any call through `client.redis`; the
        # client's own calls are bounded as a whole besides (a push may connect, then send two commands)
        timeouts_s = {"socket_connect_timeout": answer_within_s, "socket_timeout": answer_within_s}
        redis = ArqRedis(
            ConnectionPool.from_url(redis_url, **timeouts_s),
            job_serializer=payload.dumps,
            job_deserializer=payload.loads,
        )
        own_pool = pool is None
        try:
            if pool is None:
                assert database_url is not None
                pool = await store.pool.create_pool(database_url)
            client = cls(redis=redis, pool=pool, answer_within_s=answer_within_s)
            try:
                yield client
            finally:
                await client.direct.drain()
                await client._finish_handoffs()
        finally:
            if own_pool and pool is not None:
                await pool.close()
            await redis.aclose(close_connection_pool=True)

    async def enqueue(
        self,
        ref: JobRef[A],
        args: A,
        *,
        conn: Connection | None = None,
        delay_s: float | None = None,
        run_at: datetime | None = None,
        job_key: str | None = None,
        priority: int = 0,
        wait_for_room_s: float = 0.0,
    ) -> EnqueuedJob:
        """Enqueue the job; with `conn`, inside that open transaction (delivered only once it commits).

        `priority` is seconds of head start (0 to a day): the job starts before the queue's normal jobs
        that have waited less than that, and after those that waited longer.

        On a queue with a `max_backlog` that is full, waits up to `wait_for_room_s` for room, then raises
        QueueFull (nothing is written then).

        Without `conn`, answers within `answer_within_s` (plus `wait_for_room_s`) whatever Redis does, as long
        as PostgreSQL answers: `via="redis"` if Redis took the job in time, `via="outbox"` if not (the relay or
        the reconciler delivers it; a push that landed late is not doubled, its arq id is the record's).
        """
        answer_by = self._answer_by(wait_for_room_s)
        read_by = self._push_by(answer_by)
        await backpressure.make_room(self.redis, ref.queue, 1, wait_s=wait_for_room_s, read_by=read_by)
        with tracing.publishing(ref.queue.name, ref.name) as published:
            new = new_job(
                ref,
                args,
                delay_s=delay_s,
                run_at=run_at,
                job_key=job_key,
                priority=priority,
                trace_context=published.context,
            )
            enqueued = await self._enqueue(new, conn, answer_by)
            published.identify(enqueued.id)
            return enqueued

    async def enqueue_many(
        self, ref: JobRef[A], many_args: Sequence[A], *, conn: Connection, job_keys: Sequence[str | None] | None = None
    ) -> int:
        """Enqueue a batch in one statement, inside `conn`'s transaction; returns how many were new.

        For work that fans out to thousands of jobs (a daily email to every user): one round trip a batch.
        """
        keys = list(job_keys) if job_keys is not None else [None] * len(many_args)
        if len(keys) != len(many_args):
            raise ValueError("give one job key (or None) per job")
        await backpressure.make_room(self.redis, ref.queue, len(keys), read_by=self._answer_by())
        with tracing.publishing(ref.queue.name, ref.name, jobs=len(keys)) as published:
            context = published.context
            new = [
                new_job(ref, args, job_key=key, trace_context=context)
                for args, key in zip(many_args, keys, strict=True)
            ]
            return len(await store.outbox.insert_jobs_with_outbox(conn, new)) if new else 0

    async def enqueue_group(
        self, ref: JobRef[A], many_args: Sequence[A], *, then: tuple[JobRef[B], B], conn: Connection
    ) -> EnqueuedGroup:
        """Fan out and in: enqueue one child job per `many_args`, and `then` (a job and its arguments) to
        run once when every child has reached a final state (succeeded, dead or cancelled), inside `conn`'s
        transaction.

        Each child is counted once, right after its end is recorded (or by the reconciler's sweep, if its
        worker died in between); the count that empties the group enqueues the follow-up in its own
        transaction, so it runs once even when the last two children end at the same moment on two
        workers. It reads the children's outcomes from wherever they wrote them. With no children, it is
        enqueued at once.
        """
        await backpressure.make_room(self.redis, ref.queue, len(many_args), read_by=self._answer_by())
        group_id = uuid.uuid4().hex
        with tracing.publishing(ref.queue.name, ref.name, jobs=len(many_args)) as published:
            context = published.context
            children = [
                dataclasses.replace(new_job(ref, args, trace_context=context), group_id=group_id) for args in many_args
            ]
            await store.groups.insert_group(conn, group_id, children, then=new_job(*then, trace_context=context))
        return EnqueuedGroup(id=group_id, children=[c.id for c in children])

    async def find_job(self, job_id: str) -> JobRecord | None:
        """A job's record (status, attempts, progress), or None if there is none."""
        async with self.pool.acquire() as conn:
            return await store.jobs.find_job(conn, job_id)

    async def group_status(self, group_id: str) -> GroupStatus | None:
        async with self.pool.acquire() as conn:
            return await store.groups.group_status(conn, group_id)

    async def cancel(self, job_id: str) -> Literal["cancelled", "running", "not_pending"]:
        """Cancel a job that has not started yet, or that waits for its next attempt.

        Raises a RedisError, and changes nothing, if Redis does not answer within `answer_within_s`."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                job = await store.jobs.mark_cancelled(conn, job_id)
                if job is None:
                    return "not_pending"
                await store.groups.count_ended(conn, [job.id])  # a cancelled child counts as ended
                await store.outbox.delete_entries_of(conn, job_id)
                redis_id = payload.redis_job_id(job.id, job.attempt_base)
                # the bound is Redis's alone: PostgreSQL's time (a row lock) is no sign that Redis is away
                async with self._redis_until(self._answer_by()):
                    removed = await dispatch.remove_unstarted(self.redis, redis_id, job.queue)
                if not removed:
                    raise _StartedMeanwhile  # leaving the transaction by an exception undoes the cancel
        except _StartedMeanwhile:
            return "running"
        return "cancelled"

    async def abort(self, job_id: str) -> Literal["aborting", "cancelled", "not_pending"]:
        """Stop a job: a running one is aborted by its worker at its next heartbeat (within the worker's
        `heartbeat_interval_s`), its body cancelled and the job `cancelled`; a pending one is cancelled now.
        "not_pending" when it has finished already."""
        for _ in range(3):  # it may start between the two looks (then abort it), or end (then say so)
            async with self.pool.acquire() as conn:
                if await store.jobs.request_abort(conn, job_id):
                    return "aborting"
            outcome = await self.cancel(job_id)
            if outcome != "running":
                return outcome
        return "not_pending"  # it kept changing under us: only a retry loop of a job's own could do that

    async def retry_dead(self, job_ids: Sequence[str]) -> DeadRetried:
        """Give dead jobs a fresh budget of attempts; their records keep every earlier attempt.

        Delivered now if Redis answers within `answer_within_s`; otherwise the workers' relays deliver them
        when it is back.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            requeued = await store.jobs.mark_dead_requeued(conn, job_ids)
            await store.outbox.insert_entries(conn, requeued)
        queues = sorted({e.queue for e in requeued})
        delivered = 0
        try:
            async with self._redis_until(self._answer_by()):
                while queues and (batch := await deliver_batch(self.pool, self.redis, queues)):
                    delivered += batch
        except (RedisError, OSError) as error:
            log.warning("dead_retry_left_to_relay", jobs=len(requeued) - delivered, error=repr(error))
        return DeadRetried(requeued=[e.job_id for e in requeued], delivered=delivered)

    def _answer_by(self, extra_s: float = 0.0) -> float:
        """The loop's time by which a call starting now answers."""
        return asyncio.get_running_loop().time() + extra_s + self.answer_within_s - _ANSWER_MARGIN_S

    def _push_by(self, answer_by: float) -> float:
        """The time by which Redis must have taken a job, leaving the rest for handing it to the outbox."""
        return answer_by - self.answer_within_s * _OUTBOX_SHARE

    @asynccontextmanager
    async def _redis_until(self, deadline: float) -> AsyncIterator[None]:
        """Cut the block's wait on Redis at `deadline` (the loop's time): connect, retries and replies all
        count. Past it, a RedisError like any outage's; a command sent may still be carried out later."""
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError as error:
            raise RedisTimeoutError(f"Redis did not answer within {self.answer_within_s} s") from error

    async def _enqueue(self, new: NewJob, conn: Connection | None, answer_by: float) -> EnqueuedJob:
        if conn is not None:
            job_id, created = await _insert(conn, new, with_outbox=True)
            return EnqueuedJob(id=job_id, created=created, via="outbox")
        if new.job_key is not None:
            # alone: its INSERT may wait on another transaction that holds the key, and must not hold a
            # batch of other callers' jobs behind it
            return await self._enqueue_alone(new, answer_by)
        enqueued = await self.direct.submit(_Direct(new=new, answer_by=answer_by))
        return enqueued if enqueued is not None else await self._enqueue_alone(new, answer_by)

    async def _write_direct(self, directs: list[_Direct]) -> list[EnqueuedJob | None]:
        """Write a batch of direct enqueues: one INSERT, then one Redis call, cut short in time for the
        batch's first caller. None for a job to be enqueued alone: one whose key a pending job holds, or
        every job of a batch PostgreSQL refused."""
        batch = [direct.new for direct in directs]
        try:
            async with self.pool.acquire() as own:
                created = await store.jobs.insert_jobs(own, batch)
        except (asyncpg.PostgresError, ValueError, TypeError) as error:  # refused, or a value asyncpg can't encode
            away = isinstance(error, TRANSIENT_ERRORS) and not isinstance(error, ValueError)
            if len(batch) == 1 or away:
                raise
            # a value one job carries spoils the statement for all: each alone, so only its caller fails
            # the error's type, not its message: PostgreSQL may quote the values it refused
            log.warning("enqueue_batch_refused", jobs=len(batch), error_type=type(error).__name__)
            return [None] * len(batch)
        fresh = [new for new in batch if new.id in created]
        answer_by = min(direct.answer_by for direct in directs)
        via = await self._deliver(fresh, answer_by) if fresh else "redis"
        return [EnqueuedJob(id=new.id, created=True, via=via) if new.id in created else None for new in batch]

    async def _enqueue_alone(self, new: NewJob, answer_by: float) -> EnqueuedJob:
        async with self.pool.acquire() as own:
            job_id, created = await _insert(own, new, with_outbox=False)
        if not created:
            return EnqueuedJob(id=job_id, created=False, via="redis")
        return EnqueuedJob(id=new.id, created=True, via=await self._deliver([new], answer_by))

    async def _deliver(self, jobs: list[NewJob], answer_by: float) -> Literal["redis", "outbox"]:
        """Push recorded jobs to Redis; if Redis is away or slow, hand them to the relay rather than lose them."""
        entries = [_entry_of(new) for new in jobs]
        push_by = self._push_by(answer_by)
        try:
            if asyncio.get_running_loop().time() >= push_by:  # spent waiting for the batch before: no push
                raise RedisTimeoutError("no time was left to push to Redis")
            async with self._redis_until(push_by):
                await dispatch.push(self.redis, [dispatch.for_entry(entry) for entry in entries])
        except (RedisError, OSError) as error:
            log.warning("job_push_failed_handed_to_relay", job_ids=[new.id for new in jobs], error=repr(error))
            await self._hand_to_relay(entries, answer_by)
            return "outbox"
        return "redis"

    async def _hand_to_relay(self, entries: list[OutboxEntry], answer_by: float) -> None:
        """Write the jobs' outbox rows, waiting for the write until `answer_by` at most: a slow PostgreSQL
        finishes it in the background (the callers have their answer by then), and the relay delivers."""
        handoff = asyncio.create_task(self._write_outbox(entries), name="millrace-outbox-handoff")
        self._handoffs.add(handoff)
        handoff.add_done_callback(self._handoffs.discard)
        await asyncio.wait([handoff], timeout=max(answer_by - asyncio.get_running_loop().time(), 0.0))

    async def _write_outbox(self, entries: list[OutboxEntry]) -> None:
        job_ids = [entry.job_id for entry in entries]
        try:
            async with self.pool.acquire() as own:
                await store.outbox.insert_entries(own, entries)
        except asyncio.CancelledError:
            log.warning("job_left_to_the_reconciler", job_ids=job_ids, error="cut at the client's close")
            raise
        except Exception:
            # the jobs are on record, pending: the reconciler pushes what Redis lacks once it has been
            # quiet a while. An error now would make callers enqueue them a second time
            log.exception("job_left_to_the_reconciler", job_ids=job_ids)

    async def _finish_handoffs(self) -> None:
        """At close: give the outbox writes still going on `answer_within_s` to end, then cut them (their jobs
        are on record, pending: the reconciler delivers them)."""
        if not self._handoffs:
            return
        _, late = await asyncio.wait(set(self._handoffs), timeout=self.answer_within_s)
        for handoff in late:
            handoff.cancel()
        if late:
            await asyncio.wait(late, timeout=self.answer_within_s)


def _entry_of(new: NewJob) -> OutboxEntry:
    return OutboxEntry(
        job_id=new.id,
        queue=new.queue,
        function=new.function,
        args=new.args,
        attempt_base=0,
        run_at=new.run_at,
        enqueued_at=new.enqueued_at,
        trace_context=new.trace_context,
        priority=new.priority,
    )


async def _insert(conn: Connection, new: NewJob, *, with_outbox: bool) -> tuple[str, bool]:
    """Insert the job, or find the pending job that holds its key; (id, created)."""
    insert = store.outbox.insert_jobs_with_outbox if with_outbox else store.jobs.insert_jobs
    for _ in range(_KEY_RACE_TRIES):
        if await insert(conn, [new]):
            return new.id, True
        assert new.job_key is not None, "only a job key can keep a new job from being inserted"
        existing = await store.jobs.find_pending_id(conn, new.job_key)
        if existing is not None:
            return existing, False
        # the job holding the key started between the two statements: the key is free, insert again
    raise RuntimeError(f"job key {new.job_key!r} was taken and freed {_KEY_RACE_TRIES} times in a row")


def new_job(
    ref: JobRef[A],
    args: A,
    *,
    delay_s: float | None = None,
    run_at: datetime | None = None,
    job_key: str | None = None,
    priority: int = 0,
    trace_context: tracing.TraceContext | None = None,
) -> NewJob:
    """The record of a job about to be enqueued; raises InvalidJobArguments or ValueError on bad input."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY_S:
        raise ValueError(f"priority must be whole seconds between 0 and {MAX_PRIORITY_S}")
    if job_key is not None:
        _check_job_key(job_key)
    now = CLOCK.now()
    return NewJob(
        id=uuid.uuid4().hex,
        queue=ref.queue.name,
        function=ref.name,
        args=ref.dump(args),
        job_key=job_key,
        run_at=_run_at(now, delay_s, run_at),
        enqueued_at=now,
        trace_context=trace_context,
        priority=priority,
    )


def _check_job_key(job_key: str) -> None:
    if not isinstance(job_key, str) or not job_key:
        raise ValueError("job_key must be a non-empty string")
    problem = unstorable_text(job_key)
    if problem is None and len(job_key) > MAX_JOB_KEY_CHARS:
        problem = f"longer than {MAX_JOB_KEY_CHARS} characters"
    if problem is not None:
        raise ValueError(f"job_key cannot be stored: {problem}")


def _run_at(now: datetime, delay_s: float | None, run_at: datetime | None) -> datetime | None:
    if delay_s is not None and run_at is not None:
        raise ValueError("give delay_s or run_at, not both")
    if delay_s is not None:
        if not 0 <= delay_s <= MAX_DELAY.total_seconds():  # NaN fails this too
            raise ValueError(f"delay_s must be between 0 and {MAX_DELAY.total_seconds():.0f} seconds")
        return now + timedelta(seconds=delay_s)
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must carry a time zone")
        if run_at > now + MAX_DELAY:
            raise ValueError(f"run_at must be within {MAX_DELAY.days} days")
    return run_at
