"""Writes attempt events to PostgreSQL in batches: group commit, never one round trip per event.

Events wait in memory while a write is in flight and go out together in the next one, so the batch
grows with the load by itself. A finishing attempt waits until its event is committed before arq
acknowledges the job in Redis: a worker that dies afterwards cannot lose the record of a finished job.

A starting attempt does not wait. arq starts jobs only while it has free slots within one poll, so a
job that held its slot for one more commit would cut a worker to `max_jobs / poll_delay` jobs a second.
If the worker dies before the start is written (it usually is within a millisecond), the next attempt's
start records the missing one as lost, with its time and worker unknown.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from millrace import store
from millrace.records import AttemptFinished, AttemptStarted
from millrace.store.pool import TRANSIENT_ERRORS, Pool

log = structlog.get_logger(__name__)

Event = AttemptStarted | AttemptFinished


class RecordWriter:
    def __init__(self, pool: Pool, *, max_batch: int = 1000, max_retry_delay_s: float = 5.0) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_retry_delay_s = max_retry_delay_s
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0
        self.events_written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="millrace-record-writer")

    def record_soon(self, event: Event) -> None:
        """Queue `event` for the next batch, without waiting for it."""
        self._pending.append((event, asyncio.get_running_loop().create_future()))
        self._wake.set()

    async def record(self, event: Event) -> None:
        """Return once `event` is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        self._wake.set()
        # shielded: arq cancelling the job must not cancel the write of its record
        await asyncio.shield(done)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Write everything pending, the batch in flight included, then stop.

        Bounded: with PostgreSQL away the writer would retry for ever, and a worker must still stop.
        """
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("job_records_not_written_at_shutdown", events=len(self._pending))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write_until_done(batch)
            if self._closing:
                return

    async def _write_until_done(self, batch: list[tuple[Event, asyncio.Future[None]]]) -> None:
        starts = [e for e, _ in batch if isinstance(e, AttemptStarted)]
        finishes = [e for e, _ in batch if isinstance(e, AttemptFinished)]
        delay_s = 0.05
        while True:
            try:
                await self._write(starts, finishes)
                break
            except TRANSIENT_ERRORS as error:
                # PostgreSQL is away: keep the events and keep trying; the jobs waiting on them wait too
                log.warning("job_records_write_failed", error=repr(error), events=len(batch), retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._max_retry_delay_s)
            except Exception:
                # a bad event must not hold back the others: write them one by one, drop what fails
                await self._write_one_by_one(starts, finishes)
                break
        self.batches_written += 1
        self.events_written += len(batch)
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _write(self, starts: list[AttemptStarted], finishes: list[AttemptFinished]) -> None:
        async with self._pool.acquire() as conn:
            await store.jobs.apply_attempt_events(conn, starts, finishes)

    async def _write_one_by_one(self, starts: list[AttemptStarted], finishes: list[AttemptFinished]) -> None:
        events: list[Event] = [*starts, *finishes]
        for event in events:
            try:
                if isinstance(event, AttemptStarted):
                    await self._write([event], [])
                else:
                    await self._write([], [event])
            except Exception:
                log.exception("job_record_dropped", job_id=event.job_id, attempt=event.attempt)
