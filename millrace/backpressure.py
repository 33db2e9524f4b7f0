"""Backpressure: a queue that declares `max_backlog` refuses producers while it holds that many jobs.

The backlog is what Redis holds for the queue (one ZCARD: waiting, scheduled, retrying and running
jobs), read before the record is written, so a refused job leaves nothing behind. The bound is soft:
producers that read it at the same moment may each add their jobs, overshooting it by their number.
While Redis is away the backlog cannot be read, and jobs are taken: they wait in the outbox, and
refusing them would turn a Redis blip into lost sign-ups.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from arq.connections import ArqRedis

from millrace.errors import QueueFull
from millrace.outages import OUTAGES
from millrace.queues import Queue

log = structlog.get_logger(__name__)

#: what a refused producer is told to wait before it tries again
RETRY_AFTER_S = 5.0
#: Redis away, or its socket refused: the backlog is unknown
_UNREADABLE: tuple[type[BaseException], ...] = (*OUTAGES, OSError)
#: how often a producer that chose to wait for room looks again
LOOK_AGAIN_S = 0.2


async def make_room(
    redis: ArqRedis, queue: Queue, jobs: int, *, wait_s: float = 0.0, read_by: float | None = None
) -> None:
    """Return when `jobs` more fit under the queue's `max_backlog`; raise QueueFull if they do not
    within `wait_s` seconds. A read Redis has not answered by `read_by` (the loop's time) counts as Redis
    away: the producer is not held up by it."""
    if queue.max_backlog is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            async with asyncio.timeout_at(read_by):  # its TimeoutError is an OSError: unreadable
                backlog = int(await redis.zcard(queue.redis_key))
        except _UNREADABLE as error:
            log.warning("queue_backlog_unknown", queue=queue.name, error=repr(error))
            return
        if backlog + jobs <= queue.max_backlog or (backlog == 0 and jobs > queue.max_backlog):
            return  # a batch larger than the bound goes into an empty queue rather than never
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            log.info("queue_full", queue=queue.name, backlog=backlog, max_backlog=queue.max_backlog)
            raise QueueFull(queue.name, backlog, queue.max_backlog, RETRY_AFTER_S)
        await asyncio.sleep(min(LOOK_AGAIN_S, left_s))
