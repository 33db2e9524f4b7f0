"""Jobs arq finishes without running Millrace's wrapper: put back from PostgreSQL, or dead with arq's reason.

arq gives up on a job before calling it when its payload is gone from Redis ("job expired": evicted,
lost), when it was aborted, or when it has been tried too often; it then stores a failed result, and
that is all. arq serializes that failed result with the worker's job serializer, which is where we
hear of it: the serializer notes the job, and a task settles its record. A payload Redis lost is no
reason to lose a job whose record PostgreSQL keeps: a pending record is pushed again. A job tried more
often than arq allows, or with no record at all (planted by hand), ends dead with arq's reason rather
than pending for ever with nothing behind it. A record in progress or final is left to its worker.

A result that arq stores after Millrace's wrapper ran is a success (the wrapper returns normally for
dead jobs too), unless arq's backstop timeout cut the wrapper short: then the record says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from millrace import dispatch, payload, store
from millrace.outages import OUTAGES
from millrace.pause import QueuePause
from millrace.queues import redis_queue_key
from millrace.store.pool import Pool

log = structlog.get_logger(__name__)

#: how arq says that it will not try a job again; whatever else made it drop a job (its payload was
#: gone, or its own timeout cut the wrapper short while PostgreSQL was away), a pending record is
#: pushed again rather than given up
_TRIED_TOO_OFTEN = "retries exceeded"
#: how many times (50 ms apart) to look whether arq has finished with a dropped job's id
_ARQ_FINISH_POLLS = 100


class DroppedJobs:
    """One per worker process: built with its arq settings, attached to its pool at start-up."""

    def __init__(self, queue: str, pause: QueuePause | None = None) -> None:
        self._queue = queue
        # a job sent back again and again while its queue is paused may run out of arq's tries: that is
        # no reason to end it, and it is pushed again like one whose payload Redis lost
        self._pause = pause or QueuePause()
        self._pool: Pool | None = None
        self._redis: ArqRedis | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, pool: Pool, redis: ArqRedis) -> None:
        self._pool = pool
        self._redis = redis

    def serializer(self) -> Callable[[Any], bytes]:
        """arq's job serializer for this worker: JSON, noting every failed result on its way."""

        def dumps(data: Any) -> bytes:
            if isinstance(data, dict) and data.get("s") is False and "id" in data:
                self._note(str(data["id"]), str(data.get("f")), repr(data.get("r")))
            return payload.dumps(data)

        return dumps

    async def close(self) -> None:
        """Wait for the records being written: a worker stopping must not lose them."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _note(self, arq_job_id: str, function: str, reason: str) -> None:
        record_id = payload.record_id_of(arq_job_id)
        log.error("job_dropped_by_arq", job_id=record_id, function=function, reason=reason)
        task = asyncio.get_running_loop().create_task(self._settle(arq_job_id, record_id, function, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, arq_job_id: str, record_id: str, function: str, reason: str) -> None:
        if self._pool is None or self._redis is None:
            log.error("job_dropped_record_not_written", job_id=record_id, reason="worker not started")
            return
        delay_s = 0.1
        while True:
            try:
                push_again = _TRIED_TOO_OFTEN not in reason or self._pause.paused
                if push_again and await self._push_again(arq_job_id, record_id):
                    return
                async with self._pool.acquire() as conn:
                    await store.jobs.mark_dropped(
                        conn,
                        job_id=record_id,
                        queue=self._queue,
                        function=function,
                        reason=f"arq dropped the job before it ran: {reason}",
                    )
                return
            except OUTAGES as error:  # Redis or PostgreSQL away: the record waits, bounded only by shutdown
                log.warning("job_dropped_record_write_failed", job_id=record_id, error=repr(error))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def _push_again(self, arq_job_id: str, record_id: str) -> bool:
        """True when the record is pending and its job is back in Redis."""
        assert self._pool is not None
        assert self._redis is not None
        async with self._pool.acquire() as conn:
            pending = await store.jobs.list_still_pending(conn, [record_id])
        if not pending:
            return False
        # arq is about to take the id out of its queue and store its failed result under it, which would
        # erase a job pushed now and refuse one pushed later: wait for that, then drop the failed result
        for _ in range(_ARQ_FINISH_POLLS):
            if await self._redis.zscore(redis_queue_key(self._queue), arq_job_id) is None:
                break
            await asyncio.sleep(0.05)
        await self._redis.delete(result_key_prefix + arq_job_id)
        await dispatch.push(self._redis, [dispatch.for_entry(e) for e in pending])
        log.warning("job_restored_to_redis", job_id=record_id, reason="arq found its payload gone")
        return True
