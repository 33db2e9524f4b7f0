"""An idle worker wakes the moment a job arrives, instead of polling Redis every `poll_delay`.

arq reads its queue with ZRANGEBYSCORE on every turn of its loop and sleeps `poll_delay` in between,
so a job waits up to that long, and an idle worker sends ten reads a second at 0.1 s. Here the worker's
own Redis client, handed to arq through the settings' public `redis_pool`, makes that read wait when
nothing is due: on a BLPOP of the queue's wake list, to which every enqueue of Millrace's pushes a
token (dispatch.py), for at most IDLE_WAIT_S and never past the moment the earliest deferred job falls
due. An idle worker sends about two commands every IDLE_WAIT_S, and starts a job one round trip after
its enqueue.

While the worker runs jobs, the wait is at most BUSY_WAIT_S: a job of its own that fails is put back
by arq for a retry without a token, and must not wait long. A cron tick starts at most 0.5 s late:
arq's scheduler enqueues it as a deferred job up to 1 s ahead (two of its 0.5 s windows), on a turn of
the loop, and a turn comes at least every IDLE_WAIT_S; the wait ends when the tick is due.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from arq.connections import ArqRedis

from millrace.clock import CLOCK

#: the longest an idle worker waits for a token before it reads its queue again
IDLE_WAIT_S = 1.5
#: the longest a worker that runs jobs waits: what arq's own poll would have slept
BUSY_WAIT_S = 0.1
#: arq's loop still sleeps between turns; with the wait in the read, this only bounds a full worker's
#: turns (arq reads nothing while every slot is taken)
LOOP_DELAY_S = 0.005
#: tokens kept per queue: enough to wake every worker of a burst, bounded when no worker waits
MAX_TOKENS = 256

# The read arq makes, and what the wait needs in the same round trip: the earliest job's score when
# nothing is due. Tokens still in the list then stand for jobs taken or not yet due (the earliest score
# covers those), so they are cleared: a token pushed after this read wakes a worker for a new job.
_READ_LUA = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', ARGV[3], ARGV[4])
if #due > 0 then
  return {due, false}
end
redis.call('DEL', KEYS[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {due, first[2] or false}
"""


def wake_key(queue_key: str) -> str:
    """The list a worker of `queue_key` waits on, and to which producers push a token per job."""
    return queue_key + ":wake"


class WakingRedis(ArqRedis):
    """arq's Redis client, whose read of the queue waits for a job instead of coming back empty."""

    def __init__(self, *args: Any, queue_key: str, idle_wait_s: float = IDLE_WAIT_S, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_key = queue_key
        self.idle_wait_s = idle_wait_s
        #: whether the worker runs jobs now (the runtime sets it at start-up); then the wait is short
        self.busy: Callable[[], bool] = lambda: False
        self._read = self.register_script(_READ_LUA)

    async def zrangebyscore(  # type: ignore[override]
        self, name: str, min: Any, max: Any, start: int | None = None, num: int | None = None, **kwargs: Any
    ) -> Any:
        if name != self.queue_key or num is None or kwargs:  # not arq's poll: as Redis answers
            return await super().zrangebyscore(name, min, max, start=start, num=num, **kwargs)
        due, first_score = await self._read(keys=[name, wake_key(name)], args=[min, max, start or 0, num])
        if due:
            return due
        wait_s = BUSY_WAIT_S if self.busy() else self.idle_wait_s
        if first_score is not None:  # wake no later than the earliest deferred job is due
            # (not min(): arq names this method's arguments min and max, after Redis's)
            wait_s = builtins.min(wait_s, float(first_score) / 1000 - CLOCK.time())
        if wait_s <= 0.001:
            return await self._read_again(name, min, start, num)
        # BLPOP takes fractional seconds (Redis >= 6), which redis-py's typed blpop() does not admit
        woken = await self.execute_command("BLPOP", wake_key(name), f"{wait_s:.3f}")  # type: ignore[no-untyped-call]
        if woken is None and (first_score is None or float(first_score) / 1000 > CLOCK.time()):
            return []  # nothing came and nothing fell due: arq's next turn reads again
        return await self._read_again(name, min, start, num)

    async def _read_again(self, name: str, min: Any, start: int | None, num: int) -> Any:
        due, _ = await self._read(keys=[name, wake_key(name)], args=[min, CLOCK.ms(), start or 0, num])
        return due
