"""Paused queues: a person pauses a queue, its workers take no new job and finish what they hold.

The pause is a row in PostgreSQL (store.queues), so it outlives a Redis restart, and every worker reads
it with its heartbeat: it costs no statement of its own, and holds within one heartbeat interval. A job
a paused worker takes from Redis goes back there uncounted, like one held back by a cap, and comes back
less and less often the longer the pause lasts, so that a long pause spends few of arq's tries.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import arq.worker
import structlog

log = structlog.get_logger("millrace.job")

#: how soon a job found paused looks again, at first (a pause of a few seconds costs a few seconds)
RECHECK_MIN_S = 1.0
#: and at most, however long the pause (a resumed queue starts again within this, plus a heartbeat)
RECHECK_MAX_S = 60.0


@dataclass(slots=True)
class QueuePause:
    """What this worker last heard of its queue's pause; one per worker process, set by its heartbeat."""

    #: time.monotonic() when this worker first saw the pause; None while the queue runs
    paused_since: float | None = None

    @property
    def paused(self) -> bool:
        return self.paused_since is not None

    def heard(self, paused: bool) -> None:
        if paused and self.paused_since is None:
            self.paused_since = time.monotonic()
            log.warning("queue_paused")
        elif not paused and self.paused_since is not None:
            self.paused_since = None
            log.info("queue_resumed")

    def come_back_in_s(self) -> float:
        paused_for_s = 0.0 if self.paused_since is None else time.monotonic() - self.paused_since
        return min(RECHECK_MAX_S, max(RECHECK_MIN_S, paused_for_s / 10)) * random.uniform(1.0, 1.25)


def hold_if_paused(pause: QueuePause) -> None:
    """Send the job back to Redis, uncounted, while its queue is paused."""
    if pause.paused:
        raise arq.worker.Retry(defer=pause.come_back_in_s())
