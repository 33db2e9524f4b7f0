"""Caps that hold across every worker process: at most `limit` jobs under a cap run at once, however many
workers run (the AI provider: 2 in flight, whatever the deploy's size).

Redis keeps one sorted set per cap: its holders, each scored with the Redis time its hold runs out. A
holder renews its hold while it runs and removes it when it ends; a holder that died (SIGKILL, a lost
machine) stops renewing, and its place frees itself `HOLD_S` later at most. The times are Redis's own
(`TIME`), so the workers' clocks do not matter.

A job takes its places before its claim: a job held back has spent no attempt. It goes back to Redis
for a while that grows with the queue of jobs waiting for the same cap, so a backlog does not poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from arq.connections import ArqRedis

from millrace import partition
from millrace.outages import OUTAGES

log = structlog.get_logger(__name__)

_KEY_PREFIX = "millrace:cap:"
#: a holder that stops renewing (its worker died) frees its place this long after its last renewal
HOLD_S = 15.0
RENEW_EVERY_S = HOLD_S / 3
#: a waiting job comes back after about this long per turn of the cap ahead of it, within these bounds
#: (each return is one of arq's tries, of which a job has payload.MAX_JOB_TRY: 1,000 returns of 30 s
#: are more than eight hours of waiting)
WAIT_MIN_S = 0.25
WAIT_MAX_S = 30.0

_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, hold, holder, waiter = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[1], holder) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + hold, holder)
  redis.call('ZREM', KEYS[2], waiter)
  redis.call('PEXPIRE', KEYS[1], hold * 2)
  return -1
end
redis.call('ZADD', KEYS[2], now + hold, waiter)
redis.call('PEXPIRE', KEYS[2], hold * 2)
return redis.call('ZCARD', KEYS[2]) - 1
"""

_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` jobs run at once under `name`, across every worker. Jobs (and queues) that name
    the same cap share it.

    With `per_arg`, each value of that job argument has a cap of its own: `Cap("share", 3,
    per_arg="tenant_id")` lets no tenant hold more than 3 of a queue's places, so one tenant's burst
    leaves the others room (its extra jobs wait in Redis, uncounted, and come back later).
    """

    name: str
    limit: int
    per_arg: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"cap {self.name!r}: the limit must be at least 1")

    def for_args(self, args: Mapping[str, Any]) -> Cap:
        """The cap a job with these arguments runs under: this one, or its argument's own."""
        if self.per_arg is None:
            return self
        return Cap(f"{self.name}:{partition.value_key(args, self.per_arg)}", self.limit)

    @property
    def key(self) -> str:
        return _KEY_PREFIX + self.name


@dataclass(frozen=True, slots=True)
class Full:
    """The cap had no place; `ahead` other jobs were waiting for one too."""

    cap: Cap
    ahead: int

    def come_back_in_s(self) -> float:
        turns = 1 + self.ahead / self.cap.limit
        return min(WAIT_MAX_S, WAIT_MIN_S * turns) * random.uniform(1.0, 1.5)


async def take(
    redis: ArqRedis, cap: Cap, holder: str, *, waiter: str | None = None, hold_s: float | None = None
) -> Full | None:
    """Hold a place under `cap` for `holder` (one attempt's own name); None when held, Full when there was
    none. `waiter` (the job's id) counts the job once among those waiting, however often it comes back."""
    script = redis.register_script(_TAKE_LUA)
    hold_ms = int((HOLD_S if hold_s is None else hold_s) * 1000)
    args: list[str | int] = [cap.limit, hold_ms, holder, waiter or holder]
    answer = int(await script(keys=[cap.key, cap.key + ":waiting"], args=args))
    return None if answer < 0 else Full(cap=cap, ahead=answer)


async def release(redis: ArqRedis, caps: Sequence[Cap], holder: str) -> None:
    if not caps:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for cap in caps:
            pipe.zrem(cap.key, holder)
        await pipe.execute()


async def holders(redis: ArqRedis, cap: Cap) -> list[str]:
    return [m.decode() for m in await redis.zrange(cap.key, 0, -1)]


async def acquire(redis: ArqRedis, caps: Sequence[Cap], holder: str, *, waiter: str | None = None) -> Full | None:
    """A place under each cap, in order, for `holder`; Full (and nothing held) if one had no place."""
    taken: list[Cap] = []
    try:
        for cap in caps:
            full = await take(redis, cap, holder, waiter=waiter)
            if full is not None:
                await release(redis, taken, holder)
                return full
            taken.append(cap)
    except BaseException:
        with contextlib.suppress(*OUTAGES):
            await asyncio.shield(release(redis, taken, holder))
        raise
    return None


@contextlib.asynccontextmanager
async def kept(redis: ArqRedis, caps: Sequence[Cap], holder: str) -> AsyncIterator[None]:
    """Keep the places `acquire` took renewed until the block ends, then free them."""
    renewing = asyncio.create_task(_renew(redis, caps, holder), name=f"millrace-cap-renew-{holder}")
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        # shielded: a cancelled job must still free its places; if Redis is away they expire on their own
        with contextlib.suppress(*OUTAGES):
            await asyncio.shield(release(redis, caps, holder))


async def _renew(redis: ArqRedis, caps: Sequence[Cap], holder: str) -> None:
    script = redis.register_script(_RENEW_LUA)
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        for cap in caps:
            try:
                renewed = await script(keys=[cap.key], args=[int(HOLD_S * 1000), holder])
            except OUTAGES as error:  # tried again next time: a hold outlasts two missed renewals
                log.warning("cap_not_renewed", cap=cap.name, error=type(error).__name__)
                continue
            if not renewed:  # Redis lost it (restarted empty): the job runs on; the cap may be passed once
                log.warning("cap_hold_lost", cap=cap.name, holder=holder)
