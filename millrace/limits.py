"""Rate limits that hold across every worker process: a fragile provider sees at most `calls` calls arrive
per `per_s` seconds, however many workers run.

The rule is GCRA (the generic cell rate algorithm, as in ATM networks and redis-cell): Redis keeps one
number per limit, the theoretical arrival time of the next call, and one script moves it. The time is
Redis's own (`TIME`), so the workers' clocks do not matter. A job takes its slot before its claim: a
job held back has spent no attempt. A slot due soon is reserved and slept for; a later one is not
reserved, and the job goes back to Redis until about then, so a backlog waits in the queue, not in a
loop that asks again and again.

The provider counts arrivals, not starts, and a call arrives a little after its slot (the event loop's
lag, the connection, the provider's own accept: tens of milliseconds on a loaded machine). Each call is
therefore given `margin_s` to arrive in: slots are spaced so that any `per_s + margin_s` holds at most
`calls` of them, and a call that arrives within the margin of its slot then shares no window of `per_s`
with more than `calls - 1` others, however the calls' delays differ. The cost is margin_s / (per_s +
margin_s) of the throughput (50 ms on a one-second limit: 4.8 %). The slot is placed on Redis's clock
(the worker's measured offset, see clock.py), so a slow request to Redis or a slow answer moves no start.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis

from millrace import partition
from millrace.clock import CLOCK
from millrace.errors import RetryAfter

_KEY_PREFIX = "millrace:rate:"
#: the longest a provider's Retry-After holds a limit back
MAX_HOLD_OFF_S = 24 * 3600.0

_TAKE_LUA = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local emission, tolerance, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
if wait > max_wait then
  return {0, math.ceil(wait), string.format('%.3f', now + wait)}
end
local next_tat = tat + emission
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now + tolerance) + 1000)
return {1, math.ceil(wait), string.format('%.3f', now + wait)}
"""


_HOLD_OFF_LUA = """
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000
local until_ms = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_ms then
  redis.call('SET', KEYS[1], string.format('%.3f', until_ms), 'PX', math.ceil(until_ms - now) + 1000)
end
return 1
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `calls` calls per `per_s` seconds, counted as they arrive at the provider, across every
    worker; `burst` may start back to back after a quiet spell (1: evenly spaced). Jobs that share a name
    share the limit.

    `margin_s` is the time a call has from its slot to arrive at the provider: slots are spaced for
    `calls` per `per_s + margin_s`, and a start later than half of it takes a fresh slot (the other half is
    for the way to the provider). The default covers the 99th percentile of slot-to-arrival delay on a
    loaded machine (2 cores, load 4 to 9: 21 to 48 ms), and costs 4.8 % of a one-second limit's throughput.

    With `per_arg`, each value of that job argument has a limit of its own: `per_arg="tenant_id"` gives
    every tenant `calls` per `per_s`.
    """

    name: str
    calls: int
    per_s: float = 1.0
    burst: int = 1
    per_arg: str | None = None
    margin_s: float = 0.05

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per_s <= 0 or self.burst < 1 or not self.margin_s > 0:
            raise ValueError("a rate limit needs calls >= 1, per_s > 0, burst >= 1 and margin_s > 0")

    @property
    def interval_ms(self) -> float:
        """The slots' spacing: `calls` in every `per_s + margin_s`."""
        return (self.per_s + self.margin_s) * 1000 / self.calls

    @property
    def lateness_s(self) -> float:
        """How late a call may start for its slot: half the margin, the rest is the way to the provider."""
        return self.margin_s / 2

    def key_for(self, args: Mapping[str, Any]) -> str:
        """The Redis key of the limit a job with these arguments starts under."""
        if self.per_arg is None:
            return _KEY_PREFIX + self.name
        return f"{_KEY_PREFIX}{self.name}:{partition.value_key(args, self.per_arg)}"


@dataclass(frozen=True, slots=True)
class Slot:
    #: True: the slot is this job's, `wait_s` from now. False: none within the wait allowed; ask again then
    reserved: bool
    wait_s: float
    #: the slot on Redis's clock (seconds since the epoch)
    at_s: float
    #: the slot on this process's time.monotonic()
    start_at: float


async def take(redis: ArqRedis, limit: RateLimit, key: str, *, max_wait_s: float) -> Slot:
    """Reserve the next start under `limit` (at `key`, see RateLimit.key_for) if it is due within `max_wait_s`."""
    script = redis.register_script(_TAKE_LUA)
    asked_at = time.monotonic()
    answer = await script(
        keys=[key],
        args=[limit.interval_ms, (limit.burst - 1) * limit.interval_ms, math.floor(max_wait_s * 1000)],
    )
    answered_at = time.monotonic()
    wait_s, at_s = int(answer[1]) / 1000, float(answer[2]) / 1000
    # the slot lies between the request plus its wait and the answer plus its wait, whatever the offset says
    start_at = min(max(_on_this_clock(at_s, asked_at + wait_s), asked_at + wait_s), answered_at + wait_s)
    return Slot(reserved=bool(answer[0]), wait_s=wait_s, at_s=at_s, start_at=start_at)


def _on_this_clock(redis_at_s: float, fallback: float) -> float:
    """A time on Redis's clock as time.monotonic() here, through the offset the worker measured: the
    answer's own delay (a busy loop, a slow round trip) moves no slot. Unmeasured (outside a worker), the
    slot counts from before the request, which starts it early by the request's way to Redis at most."""
    if CLOCK.uncertainty_s is None:
        return fallback
    return time.monotonic() + redis_at_s - CLOCK.time()


async def hold_off(redis: ArqRedis, limit: RateLimit, key: str, delay_s: float) -> None:
    """No start under the limit at `key` for `delay_s` (a provider's Retry-After): every worker waits."""
    if not math.isfinite(delay_s) or delay_s <= 0:
        return
    delay_s = min(delay_s, MAX_HOLD_OFF_S)
    script = redis.register_script(_HOLD_OFF_LUA)
    # past the burst's tolerance too, or a burst could start before the provider's time is up
    tolerance_ms = (limit.burst - 1) * limit.interval_ms
    await script(keys=[key], args=[math.ceil(delay_s * 1000 + tolerance_ms)])


async def wait_for_slot(redis: ArqRedis, limit: RateLimit, *, key: str | None = None, max_wait_s: float = 60) -> None:
    """For calls inside a job (several a job, say): sleep until this call's slot under `limit`.

    A slot further off than `max_wait_s` is not reserved: RetryAfter sends the job back to try later
    (spending an attempt; a limit that busy should be the job's own, see `@job(rate_limit=...)`).
    """
    slot = await take(redis, limit, key or limit.key_for({}), max_wait_s=max_wait_s)
    if not slot.reserved:
        raise RetryAfter(slot.wait_s, f"no call under the rate limit {limit.name!r} within {max_wait_s:g} s")
    await asyncio.sleep(max(0.0, slot.start_at - time.monotonic()))
