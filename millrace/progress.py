"""Progress a job reports (done, total, a message), kept with its record without a round trip per call.

`ctx.progress(...)` only notes the latest value in memory. A task writes every job's latest value once a
second, all of them in one statement, so a job may report after every row of a million-row import. Each
value carries the lease of the attempt that reported it, and is written only while the record carries the
same lease: a value from an attempt that lost the job never overwrites its successor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime

import structlog

from millrace.records import Progress
from millrace.store import attempts
from millrace.store.pool import TRANSIENT_ERRORS, Pool

log = structlog.get_logger(__name__)


class ProgressWriter:
    def __init__(self, pool: Pool, *, interval_s: float = 1.0) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._latest: dict[tuple[str, int], Progress] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self.writes = 0

    def note(self, job_id: str, lease: int, done: int, total: int | None, message: str | None) -> None:
        progress = Progress(done=done, total=total, message=message, at=datetime.now(UTC))
        with self._lock:  # a job may report from a thread of its own (a parser run with to_thread)
            self._latest[(job_id, lease)] = progress

    def unwritten(self) -> dict[tuple[str, int], tuple[int, int | None, str | None]]:
        """(done, total, message) by (job id, lease), of what waits for the next flush."""
        with self._lock:
            return {key: (p.done, p.total, p.message) for key, p in self._latest.items()}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="millrace-progress-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await asyncio.wait_for(self.flush(), timeout=2)

    async def flush(self) -> None:
        """Write what was noted since the last flush; kept for the next one if PostgreSQL is away."""
        with self._lock:
            batch, self._latest = self._latest, {}
        if not batch:
            return
        try:
            await attempts.write_progress(self._pool, [(job_id, lease, p) for (job_id, lease), p in batch.items()])
        except BaseException:
            with self._lock:
                self._latest = {**batch, **self._latest}  # newer notes win over the batch that failed
            raise
        self.writes += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.flush()
            except TRANSIENT_ERRORS as error:
                log.warning("progress_not_written", error=type(error).__name__)
            except Exception:  # progress is never worth a dead writer: the next second tries again
                log.exception("progress_write_failed")
