"""Whether a job may start now: its places under its caps and its slot under its rate limit, both taken
before the claim, so a job held back goes back to Redis for a while without spending an attempt.

Caps and limits live in Redis and hold across every worker (see caps and limits). While Redis is away,
nothing is known about them: the job goes back for CLAIM_POSTPONE_S, like a claim PostgreSQL cannot take.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import arq.worker
import structlog
from arq.connections import ArqRedis

from millrace import caps, limits
from millrace.limits import RateLimit
from millrace.outages import OUTAGES

log = structlog.get_logger("millrace.job")

#: how long a job that cannot know whether it may start (Redis or PostgreSQL away) waits in Redis
CLAIM_POSTPONE_S = 2.0
#: a rate-limited job sleeps for a slot due within this long; a later one sends it back to Redis
RATE_LIMIT_MAX_WAIT_S = 1.0
#: how many slots a job takes before it gives up starting on time and goes back to Redis
SLOT_TRIES = 3


@contextlib.asynccontextmanager
async def places(redis: ArqRedis, job_caps: tuple[caps.Cap, ...], record_id: str, worker: str) -> AsyncIterator[None]:
    """A place under each of the job's caps for the whole attempt; with none free, the job goes back to
    Redis, for longer the more jobs wait for the same cap."""
    if not job_caps:
        yield
        return
    holder = f"{record_id}:{worker}:{secrets.token_hex(4)}"  # each copy of a job holds its own place
    try:
        full = await caps.acquire(redis, job_caps, holder, waiter=record_id)
    except OUTAGES as error:
        log.warning("job_cap_unknown", error=repr(error), retry_in_s=CLAIM_POSTPONE_S)
        raise arq.worker.Retry(defer=CLAIM_POSTPONE_S) from error
    if full is not None:
        retry_in_s = full.come_back_in_s()
        log.info("job_capped", cap=full.cap.name, waiting=full.ahead, retry_in_s=round(retry_in_s, 3))
        raise arq.worker.Retry(defer=retry_in_s)
    async with caps.kept(redis, job_caps, holder):
        yield


@dataclass(frozen=True, slots=True)
class ReservedSlot:
    limit: RateLimit
    #: the limit's Redis key for this job's arguments (RateLimit.key_for)
    key: str
    #: time.monotonic() of the slot
    start_at: float


async def reserve_slot(redis: ArqRedis, limit: RateLimit, args: Mapping[str, Any]) -> ReservedSlot:
    """This job's slot within `limit`; if none is due soon, the job goes back to Redis until about then."""
    key = limit.key_for(args)
    try:
        slot = await limits.take(redis, limit, key, max_wait_s=RATE_LIMIT_MAX_WAIT_S)
    except OUTAGES as error:
        log.warning("job_rate_limit_unknown", limit=limit.name, error=repr(error), retry_in_s=CLAIM_POSTPONE_S)
        raise arq.worker.Retry(defer=CLAIM_POSTPONE_S) from error
    if not slot.reserved:
        raise arq.worker.Retry(defer=rate_limited(limit, slot.wait_s))
    return ReservedSlot(limit=limit, key=key, start_at=slot.start_at)


def rate_limited(limit: RateLimit, wait_s: float) -> float:
    """How long a job that found no slot stays in Redis: spread out, so that a backlog does not come back
    all at once to ask again."""
    retry_in_s = wait_s * random.uniform(1.0, 1.5)
    log.info("job_rate_limited", limit=limit.name, retry_in_s=round(retry_in_s, 3))
    return retry_in_s


async def keep_slot(redis: ArqRedis, slot: ReservedSlot) -> float | None:
    """Sleep until the slot and return None; or, if the slot passed while the job was claimed and no
    fresh one is due soon, return how long the job should go back to Redis for.

    The limit holds at the provider for calls that arrive within the limit's margin of their slot (see
    limits), so a start may be late by half of it (RateLimit.lateness_s): a claim that outlasted the
    slot's wait, or a sleep that a busy event loop ended late, takes a fresh slot instead. The check is
    the last thing before the body, whose call should come first.
    """
    start_at = slot.start_at
    for _ in range(SLOT_TRIES):
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        if time.monotonic() - start_at <= slot.limit.lateness_s:
            return None
        try:
            fresh = await limits.take(redis, slot.limit, slot.key, max_wait_s=RATE_LIMIT_MAX_WAIT_S)
        except OUTAGES:
            return rate_limited(slot.limit, CLAIM_POSTPONE_S)
        if not fresh.reserved:
            return rate_limited(slot.limit, fresh.wait_s)
        start_at = fresh.start_at
    # the loop is too busy to start on time: the slot taken last is given up, unused, like a late one
    return rate_limited(slot.limit, slot.limit.interval_ms / 1000)


async def hold_off(redis: ArqRedis, slot: ReservedSlot, delay_s: float) -> None:
    """A provider said "not before `delay_s`" (429 and Retry-After): no job under its limit starts before
    then, on any worker, rather than each finding out with a call of its own."""
    try:
        await limits.hold_off(redis, slot.limit, slot.key, delay_s)
    except OUTAGES as error:
        log.warning("rate_limit_hold_off_failed", limit=slot.limit.name, error=repr(error))
        return
    log.info("rate_limit_held_off", limit=slot.limit.name, delay_s=delay_s)
