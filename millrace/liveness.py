"""Heartbeats and the reaper: a worker that dies has its jobs handed to the others within seconds.

Every worker registers in PostgreSQL, holds an advisory lock in a session of its own and beats its
heart every `heartbeat_interval_s`. The same statement reaps: jobs in progress on a worker that is no
longer live go back to `queued` under a new lease, their attempt on record as lost, and Redis frees
them from the dead worker's in-progress mark at once, instead of after arq's longest timeout plus 10 s.

A reaper judges others only after beating its own heart without a gap for two of its intervals and a
second (or `silent_after_s`, if shorter): after an outage every worker's last beat is old, and the
worker back first must give the others the time to beat again before it declares them dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable, Collection
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis

from millrace import dispatch, payload, store
from millrace.outages import OUTAGES
from millrace.pause import QueuePause
from millrace.store.workers import WORKER_LOCK_CLASS, WorkerRow

log = structlog.get_logger(__name__)


def runtime_version() -> str:
    try:
        return version("millrace")
    except PackageNotFoundError:
        return "unknown"


class Liveness:
    def __init__(
        self,
        *,
        dsn: str,
        redis: ArqRedis,
        worker_id: str,
        queue: str,
        heartbeat_interval_s: float,
        silent_after_s: float,
        running: Callable[[], Collection[str]],
        jobs_done: Callable[[], int],
        in_progress_timeout_s: float,
        claim_patience_s: float,
        pause: QueuePause | None = None,
        abort: Callable[[Collection[str]], None] = lambda job_ids: None,
    ) -> None:
        self._dsn = dsn
        self._pause = pause or QueuePause()
        self._redis = redis
        self._row = WorkerRow(
            id=worker_id,
            queue=queue,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=runtime_version(),
            lock_key=random.randint(1, 2**31 - 1),
            heartbeat_interval_s=heartbeat_interval_s,
            silent_after_s=silent_after_s,
        )
        self._running = running
        self._abort = abort
        self._judge_after_s = min(silent_after_s, 2 * heartbeat_interval_s + 1)
        self._jobs_done = jobs_done
        # an in-progress mark older than this, on a job still pending, is no live worker's: a live one
        # claims within its patience, and reports what it runs at its next beat
        stranded_age_s = claim_patience_s + 2 * heartbeat_interval_s
        self._stranded_after_s = stranded_age_s
        self._stranded_left_ms = int((in_progress_timeout_s - stranded_age_s) * 1000)
        self._stranded_sweep_at: float | None = None
        self._conn: asyncpg.Connection[Any] | None = None
        self._healthy_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.reaped = 0

    @property
    def worker_id(self) -> str:
        return self._row.id

    async def start(self) -> None:
        """Register and take the lock; raises if PostgreSQL is away (the worker cannot start without it)."""
        await self._connect()
        assert self._conn is not None
        try:
            await store.workers.register(self._conn, self._row)
            self._pause.heard(await store.queues.is_paused(self._conn, self._row.queue))
        except BaseException:  # a start tried again must not leave this session, and its lock, behind
            await self._drop_connection()
            raise
        self._healthy_since = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="millrace-heartbeat")

    async def close(self, reason: str = "shutdown") -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._connect()
            assert self._conn is not None
            await store.workers.mark_stopped(self._conn, self._row.id, reason)
        except OUTAGES as error:  # the others will find this worker silent instead
            log.warning("worker_stop_not_recorded", error=repr(error))
        if self._conn is not None:
            await self._conn.close(timeout=2)

    async def beat_once(self) -> None:
        """One heartbeat, reaping if this worker has been healthy long enough to judge the others."""
        await self._connect()
        assert self._conn is not None
        now = time.monotonic()
        if self._healthy_since is None:
            self._healthy_since = now
        judge = now - self._healthy_since >= self._judge_after_s
        running = list(self._running())
        beat = await store.workers.beat(
            self._conn, self._row.id, queue=self._row.queue, running=running, jobs_done=self._jobs_done()
        )
        self._pause.heard(beat.paused)
        if beat.aborts:
            self._abort(beat.aborts)
        if not beat.registered:  # pruned while away: be known again
            await store.workers.register(self._conn, self._row)
        if judge:
            await self._reap(running, now)
        if self._stranded_sweep_at is not None and now >= self._stranded_sweep_at:
            self._stranded_sweep_at = None
            await self.free_stranded()

    async def _reap(self, running: Collection[str], now: float) -> None:
        assert self._conn is not None
        try:
            reaped = await store.workers.reap(self._conn, self._row.id, running=running)
        except store.pool.STATEMENT_CUT_SHORT as error:  # bounded by the server: this beat stands, reap at the next
            log.warning("reap_failed", error=repr(error))
            return
        if reaped.declared_dead:
            log.warning("workers_declared_dead", workers=reaped.declared_dead)
            # what they had started but not yet claimed is stranded in Redis; look once it is old enough
            self._stranded_sweep_at = now + self._stranded_after_s
        if reaped.jobs:
            self.reaped += len(reaped.jobs)
            handed = await dispatch.hand_on(self._redis, reaped.jobs)
            log.warning("jobs_handed_on", jobs=len(reaped.jobs), in_redis=handed)

    async def free_stranded(self) -> int:
        """Free this queue's jobs that a dead worker started in Redis but never claimed in PostgreSQL."""
        if self._stranded_left_ms <= 0:
            return 0
        marked = set(await dispatch.in_progress_ids(self._redis))
        assert self._conn is not None
        records = await store.jobs.list_still_pending(self._conn, [payload.record_id_of(i) for i in marked])
        # only this queue's (the mark's age is judged by its timeout), and only the record's current arq id
        pending = [
            entry
            for entry in records
            if entry.queue == self._row.queue and payload.redis_job_id(entry.job_id, entry.attempt_base) in marked
        ]
        freed = await dispatch.free_stranded(self._redis, pending, older_than_left_ms=self._stranded_left_ms)
        if freed:
            self.reaped += freed
            log.warning("stranded_jobs_freed", jobs=freed)
        return freed

    async def _run(self) -> None:
        while True:
            try:
                await self.beat_once()
            except OUTAGES as error:
                self._healthy_since = None
                log.warning("heartbeat_failed", error=repr(error))
                await self._drop_connection()
            await asyncio.sleep(self._row.heartbeat_interval_s)

    async def _connect(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        # A statement must end in time for the next beat. PostgreSQL ends it first (its own bounds, so a
        # beat never leaves a backend behind waiting); the client's timeout is for a server that does
        # not answer at all (a partition), after which the connection is terminated.
        # The pool's codecs too: the reaper reads job arguments (jsonb) to rebuild payloads Redis lost.
        interval_s = self._row.heartbeat_interval_s
        conn = await store.pool.connect(
            self._dsn,
            connect_timeout_s=5,
            command_timeout_s=2 * interval_s + 1,
            server_settings=store.pool.KEYED_STATEMENTS_ONLY,
            statement_timeout_s=1.5 * interval_s,
            lock_timeout_s=interval_s / 2,
        )
        # A session of its own, never a pooled one: the pool's reset would release the lock. Not taken
        # when an old session of this worker still holds it (cut off, not yet ended by PostgreSQL):
        # the heartbeat alone then keeps the worker live.
        locked = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", WORKER_LOCK_CLASS, self._row.lock_key)
        if not locked:
            log.warning("worker_lock_not_taken", lock_key=self._row.lock_key)
        self._conn = conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
