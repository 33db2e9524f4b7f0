"""One clock for every due time: Redis's, since Redis holds the scores that say when a job is due.

arq reads the process's wall clock to score what it enqueues (retries, cron ticks), to read what is due
and to schedule its cron ticks. A worker whose clock is an hour ahead then runs every cron tick an hour
early and parks its retries an hour in Redis; one 90 s behind starts due jobs 90 s late. A wall clock is
set by whoever runs the machine (NTP steps, a VM restored from a snapshot, a container's host), so the
worker measures how far Redis's `TIME` is from its own and reads that clock instead, for arq's scores
and its own alike: `CLOCK.time()`. It runs on this machine's monotonic clock plus the offset to Redis's, so
a step of the wall clock between two measurements (NTP, a VM restored) moves nothing. The offset is
measured again every `SYNC_EVERY_S`; a measurement takes the round trip of the fastest of a few `TIME`
calls, so it is off by at most half of it, and one made while the loop was stalled (a slow round trip)
does not replace a better one.

Producers need no measurement: the scripts that enqueue (dispatch.py) score a job in Redis itself, from
`TIME` plus the job's delay. Heartbeats and leases are judged by PostgreSQL's clock (store/workers.py),
and a cron tick is claimed only once it is due by PostgreSQL's clock too (store/cron.py).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, tzinfo
from typing import Any

import arq.connections
import arq.worker
import structlog
from redis.asyncio import Redis

log = structlog.get_logger(__name__)

#: how often a worker measures Redis's clock again (a clock stepped by NTP, a VM resumed)
SYNC_EVERY_S = 10.0
#: `TIME` calls a measurement makes; the fastest round trip is kept
_SAMPLES = 3
#: an offset this large is worth a line in the log: somebody's clock is wrong
_WORTH_SAYING_S = 1.0
#: a measurement whose round trip is within this, or within twice the last one's, is taken
_GOOD_ENOUGH_ROUND_TRIP_S = 0.02


class QueueClock:
    """Redis's clock, read through this process's: `time.monotonic()` plus the offset last measured
    (until a measurement, this machine's wall clock)."""

    def __init__(self) -> None:
        self.offset_s = time.time() - time.monotonic()
        #: the round trip of the measurement the offset came from; its half bounds the offset's error
        self.uncertainty_s: float | None = None

    def time(self) -> float:
        if self.uncertainty_s is None:  # never measured (a producer's process): the wall clock, as it is
            return time.time()
        return time.monotonic() + self.offset_s

    def ms(self) -> int:
        return int(self.time() * 1000)

    def now(self, tz: tzinfo | None = UTC) -> datetime:
        return datetime.fromtimestamp(self.time(), tz)

    async def sync(self, redis: Redis) -> float:
        """Measure Redis's clock against this process's; returns the offset in seconds."""
        best: tuple[float, float] | None = None
        for _ in range(_SAMPLES):
            sent = time.monotonic()
            seconds, micros = await redis.time()
            back = time.monotonic()
            round_trip = back - sent
            offset = seconds + micros / 1e6 - (sent + back) / 2
            if best is None or round_trip < best[0]:
                best = (round_trip, offset)
        assert best is not None
        if self.uncertainty_s is not None and best[0] > max(2 * self.uncertainty_s, _GOOD_ENOUGH_ROUND_TRIP_S):
            return self.offset_s  # measured through a stall: the last offset is the better one
        moved = abs(best[1] - self.offset_s)
        self.uncertainty_s, self.offset_s = best
        if moved > _WORTH_SAYING_S:
            log.warning("clock_offset_measured", offset_s=round(self.offset_s, 3), round_trip_s=round(best[0], 4))
        return self.offset_s

    async def keep_in_sync(self, redis: Redis, every_s: float = SYNC_EVERY_S) -> None:
        """Measure again every `every_s`, for as long as the task runs; Redis away keeps the last offset."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.sync(redis)
            except Exception as error:  # Redis away: arq's own loop waits it out; the offset stays
                log.warning("clock_sync_failed", error=repr(error))


#: the process's clock: a worker process runs one arq worker, and arq's clock is the module's
CLOCK = QueueClock()


class _QueueDatetime(datetime):
    """What arq's worker module calls `datetime`: its `now()` is Redis's (cron ticks, due times)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        return CLOCK.now(tz)


def install_into_arq() -> None:
    """Make arq read CLOCK wherever it reads the time of day: the scores it writes (a retry's, a cron
    tick's), the due jobs it reads, the ticks its scheduler computes. arq has no seam for a clock, so its
    modules' own names are replaced, once per process; the offset is 0 until a sync."""
    arq.worker.timestamp_ms = CLOCK.ms  # type: ignore[attr-defined]  # arq imports it by name
    arq.connections.timestamp_ms = CLOCK.ms  # type: ignore[attr-defined]  # the same, for enqueue_job
    arq.worker.datetime = _QueueDatetime  # type: ignore[attr-defined]  # a subclass: all else is datetime's
