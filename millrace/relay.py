"""The outbox relay: delivers committed outbox rows to Redis, promptly and exactly once.

It wakes on the NOTIFY sent at commit and sweeps on a timer besides, for a notification missed while
its listening connection was down. Each batch is deleted from the outbox in the same transaction that
delivers it; if Redis fails the transaction rolls back and the rows wait for the next try. A delivery
repeated after a crash is dropped by Redis itself: the job's id is already there (see dispatch.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from arq.connections import ArqRedis

from millrace import dispatch, store
from millrace.outages import OUTAGES
from millrace.store.pool import TRANSIENT_ERRORS, Connection, Pool

log = structlog.get_logger(__name__)


async def deliver_batch(pool: Pool, redis: ArqRedis, queues: Sequence[str] | None, limit: int = 500) -> int:
    """Deliver up to `limit` outbox rows; returns how many. Raises if Redis is unreachable (rows stay)."""
    async with pool.acquire() as conn, conn.transaction():
        entries = await store.outbox.claim_entries(conn, list(queues) if queues else None, limit)
        if entries:
            await dispatch.push(redis, [dispatch.for_entry(e) for e in entries])
    return len(entries)


async def deliver_all(pool: Pool, redis: ArqRedis, queues: Sequence[str] | None) -> int:
    total = 0
    while delivered := await deliver_batch(pool, redis, queues):
        total += delivered
    return total


class OutboxRelay:
    def __init__(
        self,
        *,
        pool: Pool,
        redis: ArqRedis,
        dsn: str,
        queues: Sequence[str] | None,
        sweep_interval_s: float = 1.0,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._dsn = dsn
        self._queues = list(queues) if queues else None
        self._sweep_interval_s = sweep_interval_s
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="millrace-outbox-relay")

    async def deliver_backlog(self) -> None:
        """One delivery round now; an outage only postpones it to the running relay's next sweep."""
        try:
            self.delivered += await deliver_all(self._pool, self._redis, self._queues)
        except OUTAGES as error:
            log.warning("outbox_backlog_not_delivered", error=repr(error))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_listener()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._ensure_listener()
            try:
                self.delivered += await deliver_all(self._pool, self._redis, self._queues)
                failures = 0
            except OUTAGES as error:
                failures += 1
                log.warning("outbox_delivery_failed", error=repr(error), consecutive_failures=failures)
            if failures:  # a producer's notice while Redis is away would only bring another failure (and line)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
            else:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that comes as the
                # event is set (a NOTIFY as the worker stops), so the loop went on and close() waited for ever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._sweep_interval_s):
                        await self._wake.wait()
            self._wake.clear()

    def _on_notify(self, _conn: Connection, _pid: int, _channel: str, queue: object) -> None:
        if self._queues is None or queue in self._queues:
            self._wake.set()

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await store.pool.connect(self._dsn)
            await self._listener.add_listener(store.outbox.CHANNEL, self._on_notify)
        except TRANSIENT_ERRORS as error:
            self._listener = None
            log.warning("outbox_listener_unavailable", error=repr(error))

    async def _close_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
        self._listener = None
