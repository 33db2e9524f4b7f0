"""Rate limits across workers: GCRA on Redis's clock, a slot reserved only when it is due soon."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace import JobClient, Pool, RateLimit
from millrace.admission import ReservedSlot, keep_slot, reserve_slot
from millrace.limits import hold_off, take
from tests.conftest import RunWorker
from tests.processes import wait_for
from tests.providers import provider_server
from tests.sample import app


def fresh(calls: int, per_s: float = 1.0, burst: int = 1) -> RateLimit:
    return RateLimit(f"test-{uuid.uuid4().hex}", calls=calls, per_s=per_s, burst=burst)


async def test_starts_are_spaced_evenly(client: JobClient) -> None:
    limit = fresh(calls=20)
    waits = [(await take(client.redis, limit, limit.key_for({}), max_wait_s=10)).wait_s for _ in range(10)]
    # each reservation is one interval (52.5 ms: 20 in 1.05 s) after the one before; the calls take a little time
    for n, wait in enumerate(waits):
        assert n * 0.0525 - 0.02 <= wait <= n * 0.0525 + 0.001, waits


def test_slots_leave_each_call_its_margin_to_arrive() -> None:
    """`calls` slots in every per_s + margin_s: a call arriving within the margin of its slot keeps the limit."""
    assert RateLimit("x", calls=20).interval_ms == pytest.approx(52.5)
    assert RateLimit("x", calls=20, margin_s=0.1).lateness_s == pytest.approx(0.05)
    assert RateLimit("x", calls=1, per_s=60).interval_ms == pytest.approx(60_050)


async def test_a_burst_starts_at_once_after_a_quiet_spell(client: JobClient) -> None:
    limit = fresh(calls=10, burst=4)
    waits = [(await take(client.redis, limit, limit.key_for({}), max_wait_s=10)).wait_s for _ in range(6)]
    assert waits[:4] == [0, 0, 0, 0]
    assert 0.05 < waits[4] <= limit.interval_ms / 1000
    assert waits[5] > waits[4]


async def test_a_start_late_for_its_slot_takes_a_fresh_one(client: JobClient) -> None:
    """A claim that outlasted the slot's wait (or a busy loop) must not start late beside the next slot."""
    limit = fresh(calls=20)
    late = await reserve_slot(client.redis, limit, {})
    await asyncio.sleep(0.2)  # four intervals past the slot
    assert await keep_slot(client.redis, late) is None
    # a fresh slot was taken and waited for: the limit's next slot after the late one is now taken too
    assert (await take(client.redis, limit, limit.key_for({}), max_wait_s=10)).wait_s > 0


async def test_a_slot_on_time_is_kept(client: JobClient) -> None:
    limit = fresh(calls=20)
    slot = ReservedSlot(limit=limit, key=limit.key_for({}), start_at=time.monotonic() + 0.01)
    assert await keep_slot(client.redis, slot) is None
    # no fresh slot was taken: the limit is untouched
    assert (await take(client.redis, limit, limit.key_for({}), max_wait_s=10)).wait_s == 0


async def test_a_slot_too_far_away_is_not_reserved(client: JobClient) -> None:
    limit = fresh(calls=1, per_s=10)
    first = await take(client.redis, limit, limit.key_for({}), max_wait_s=1)
    later = [await take(client.redis, limit, limit.key_for({}), max_wait_s=1) for _ in range(3)]
    assert (first.reserved, first.wait_s) == (True, 0)
    # nothing reserved: each asks again about the same slot, ten seconds (and the margin) on
    assert all(not slot.reserved and 9.5 < slot.wait_s <= 10.05 for slot in later), later


async def test_many_takers_at_once_get_distinct_spaced_slots(client: JobClient) -> None:
    limit = fresh(calls=100)

    async def taker() -> float:
        slot = await take(client.redis, limit, limit.key_for({}), max_wait_s=10)
        assert slot.reserved
        return slot.start_at

    starts = sorted(await asyncio.gather(*(taker() for _ in range(50))))
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 10.5 ms apart, give or take how long each call took to be asked and answered
    assert min(gaps) > 0.0
    assert starts[-1] - starts[0] >= 49 * limit.interval_ms / 1000 - 0.05


# each example takes a limit of its own, so sharing the test's Redis client between examples is safe
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.integers(1, 50), per_s=st.floats(0.5, 5), burst=st.integers(1, 10), takers=st.integers(1, 80))
async def test_no_window_holds_more_than_the_limit(
    client: JobClient, calls: int, per_s: float, burst: int, takers: int
) -> None:
    """Reserved slots, on Redis's clock: any window of `per_s` and the margin holds at most calls + burst - 1
    of them, so calls arriving within the margin of their slots hold the limit at the provider."""
    limit = fresh(calls=calls, per_s=per_s, burst=burst)
    starts: list[float] = []
    for _ in range(takers):
        slot = await take(client.redis, limit, limit.key_for({}), max_wait_s=3600)
        starts.append(slot.at_s)
    starts.sort()
    for i, start in enumerate(starts):
        within = [s for s in starts[i:] if s < start + per_s + limit.margin_s - 0.002]  # the script's rounding
        assert len(within) <= calls + burst - 1, (limit, starts)


def test_a_limit_needs_positive_numbers() -> None:
    bad_limits: list[dict[str, Any]] = [
        {"calls": 0},
        {"calls": 1, "per_s": 0},
        {"calls": 1, "burst": 0},
        {"calls": 1, "margin_s": 0},
        {"calls": 1, "margin_s": float("nan")},
    ]
    for bad in bad_limits:
        with pytest.raises(ValueError, match="rate limit"):
            RateLimit("x", **bad)


async def test_a_rate_limited_job_waits_for_its_slot_without_spending_attempts(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    with provider_server() as providers:
        for _ in range(30):
            await client.enqueue(app.CALL_PROVIDER, app.CallArgs(url=providers.url("sms")))
        await run_worker()
        arrivals = sorted(t for _, t in providers.arrivals)
    assert len(arrivals) == 30
    # 20 a second with its margin, evenly spaced: 30 calls span 29 intervals of 52.5 ms, less the loop's jitter
    assert arrivals[-1] - arrivals[0] >= 29 * 0.0525 - 0.1
    attempts = await pool.fetchval("SELECT max(attempts) FROM millrace_jobs")
    assert attempts == 1


async def test_a_limit_per_argument_gives_each_value_its_own(client: JobClient) -> None:
    limit = RateLimit(f"test-{uuid.uuid4().hex}", calls=1, per_s=60, per_arg="tenant_id")
    for tenant in (1, 2, "1"):  # the integer 1 and the string "1" are two tenants
        assert (await take(client.redis, limit, limit.key_for({"tenant_id": tenant}), max_wait_s=0)).reserved
    again = await take(client.redis, limit, limit.key_for({"tenant_id": 1}), max_wait_s=0)
    assert not again.reserved
    assert again.wait_s > 50
    assert len(limit.key_for({"tenant_id": "x" * 10_000})) < 200
    assert limit.key_for({}) == limit.key_for({"tenant_id": None})


async def test_a_hold_off_stops_every_start_until_it_ends(client: JobClient) -> None:
    limit = fresh(calls=100, burst=5)
    key = limit.key_for({})
    await hold_off(client.redis, limit, key, 0.5)
    slot = await take(client.redis, limit, key, max_wait_s=0.1)
    assert not slot.reserved
    assert 0.4 <= slot.wait_s <= 0.6
    await hold_off(client.redis, limit, key, 0.1)  # a shorter hold-off does not cut the longer one short
    assert not (await take(client.redis, limit, key, max_wait_s=0.1)).reserved


async def test_a_429_with_retry_after_holds_every_start_back(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    with provider_server() as providers:
        providers.fail("sms", 429, retry_after="1")
        for _ in range(3):
            await client.enqueue(app.CALL_PROVIDER, app.CallArgs(url=providers.url("sms")))
        worker = asyncio.ensure_future(run_worker())
        await wait_for(lambda: providers.arrivals, timeout_s=10, what="the first call")
        first_429 = providers.arrivals[0][1]
        await asyncio.sleep(0.5)
        providers.recover("sms")
        await worker
        arrivals = sorted(t - first_429 for _, t in providers.arrivals)
    # the three calls whose slots were taken before the first answer, then nothing until Retry-After passed
    assert [t for t in arrivals if 0.3 < t < 0.95] == []
    assert len(arrivals) == 6
    statuses = await pool.fetch("SELECT status, attempts FROM millrace_jobs")
    assert {(r["status"], r["attempts"]) for r in statuses} == {("succeeded", 2)}
