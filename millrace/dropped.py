"""Jobs arq finishes without running Millrace's wrapper: their records end dead, with arq's reason.

arq gives up on a job before calling it when its payload is gone from Redis ("job expired"), when it
was aborted, or when it has been tried too often; it then stores a failed result, and that is all.
Without this, the job's record would stay pending for ever with nothing behind it. arq serializes
that failed result with the worker's job serializer, which is where we hear of it: the serializer
notes the job, and a task writes its record.

A result that arq stores after Millrace's wrapper ran is a success (the wrapper returns normally for
dead jobs too), so a failed result always means the wrapper did not have its say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from millrace import payload, store
from millrace.store.pool import TRANSIENT_ERRORS, Pool

log = structlog.get_logger(__name__)


class DroppedJobs:
    """One per worker process: built with its arq settings, attached to its pool at start-up."""

    def __init__(self, queue: str) -> None:
        self._queue = queue
        self._pool: Pool | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, pool: Pool) -> None:
        self._pool = pool

    def serializer(self) -> Callable[[Any], bytes]:
        """arq's job serializer for this worker: JSON, noting every failed result on its way."""

        def dumps(data: Any) -> bytes:
            if isinstance(data, dict) and data.get("s") is False and "id" in data:
                self._note(str(data["id"]), data.get("t"), str(data.get("f")), repr(data.get("r")))
            return payload.dumps(data)

        return dumps

    async def close(self) -> None:
        """Wait for the records being written: a worker stopping must not lose them."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _note(self, arq_job_id: str, job_try: Any, function: str, reason: str) -> None:
        record_id = payload.record_id_of(arq_job_id)
        attempt_base = payload.attempt_base_of(arq_job_id)
        run_attempt = job_try if isinstance(job_try, int) and not isinstance(job_try, bool) and job_try > 0 else 1
        log.error("job_dropped_by_arq", job_id=record_id, function=function, reason=reason)
        task = asyncio.get_running_loop().create_task(
            self._write(record_id, attempt_base + run_attempt, attempt_base, function, reason)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, record_id: str, attempt: int, attempt_base: int, function: str, reason: str) -> None:
        if self._pool is None:
            log.error("job_dropped_record_not_written", job_id=record_id, reason="worker not started")
            return
        delay_s = 0.1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    await store.jobs.mark_dropped(
                        conn,
                        job_id=record_id,
                        attempt=attempt,
                        attempt_base=attempt_base,
                        queue=self._queue,
                        function=function,
                        reason=f"arq dropped the job before it ran: {reason}",
                    )
                return
            except TRANSIENT_ERRORS as error:  # PostgreSQL away: the record waits, bounded only by shutdown
                log.warning("job_dropped_record_write_failed", job_id=record_id, error=repr(error))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
