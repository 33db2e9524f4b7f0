"""Caps across every worker: at most `limit` jobs of a cap run at once; one held back spends no attempt;
a place whose holder died frees itself."""

from __future__ import annotations

import asyncio

import pytest

from millrace import JobClient, Pool, caps
from millrace.caps import Cap, Full
from millrace.queues import Queue
from tests.conftest import RunWorker, effects
from tests.providers import provider_server
from tests.sample import app


async def test_a_cap_holds_its_limit_and_frees_places_on_release(client: JobClient) -> None:
    cap = Cap("t-two", 2)
    assert await caps.take(client.redis, cap, "a") is None
    assert await caps.take(client.redis, cap, "b") is None
    full = await caps.take(client.redis, cap, "c")
    assert isinstance(full, Full)
    assert full.ahead == 0
    assert isinstance(await caps.take(client.redis, cap, "d"), Full)
    assert (await caps.take(client.redis, cap, "e")).ahead == 2  # type: ignore[union-attr]  # Full here
    await caps.release(client.redis, [cap], "a")
    assert await caps.take(client.redis, cap, "c") is None
    assert sorted(await caps.holders(client.redis, cap)) == ["b", "c"]


async def test_a_holder_that_stops_renewing_loses_its_place(client: JobClient) -> None:
    cap = Cap("t-one", 1)
    assert await caps.take(client.redis, cap, "dead-worker-job", hold_s=0.2) is None
    assert isinstance(await caps.take(client.redis, cap, "next"), Full)
    await asyncio.sleep(0.3)
    assert await caps.take(client.redis, cap, "next") is None


async def test_acquire_holds_every_cap_or_none(client: JobClient) -> None:
    wide, narrow = Cap("t-wide", 5), Cap("t-narrow", 1)
    assert await caps.acquire(client.redis, [wide, narrow], "first") is None
    full = await caps.acquire(client.redis, [wide, narrow], "second")
    assert isinstance(full, Full)
    assert full.cap == narrow
    assert await caps.holders(client.redis, wide) == ["first"]  # the second gave back its place in `wide`


async def test_kept_places_outlive_their_hold_and_are_freed_at_the_end(
    client: JobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(caps, "HOLD_S", 0.3)
    monkeypatch.setattr(caps, "RENEW_EVERY_S", 0.1)
    cap = Cap("t-kept", 1)
    assert await caps.acquire(client.redis, [cap], "long-job") is None
    async with caps.kept(client.redis, [cap], "long-job"):
        await asyncio.sleep(0.8)
        assert await caps.holders(client.redis, cap) == ["long-job"]
    assert await caps.holders(client.redis, cap) == []


def test_a_cap_needs_a_place() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Cap("none", 0)
    assert Queue(name="ai", concurrency=4, cap=2).shared_cap == Cap("queue:ai", 2)


async def test_three_workers_never_run_more_than_the_cap_and_spend_no_attempt_waiting(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    with provider_server() as providers:
        providers.hang("slack", 0.2)  # each call takes 0.2 s, then succeeds
        for _ in range(12):
            await client.enqueue(app.CAPPED_CALL, app.CallArgs(url=providers.url("slack")))
        await asyncio.gather(*(run_worker() for _ in range(3)))
        assert providers.max_in_flight["slack"] == 2
        assert providers.attempts("slack") == 12
    statuses = await pool.fetch("SELECT status, attempts FROM millrace_jobs")
    assert {(r["status"], r["attempts"]) for r in statuses} == {("succeeded", 1)}
    assert await caps.holders(client.redis, app.PROVIDER_CAP) == []


def test_a_cap_per_argument_gives_each_value_its_own() -> None:
    share = Cap("share", 3, per_arg="tenant_id")
    acme, globex = share.for_args({"tenant_id": "acme"}), share.for_args({"tenant_id": "globex"})
    assert acme != globex
    assert acme == share.for_args({"tenant_id": "acme", "other": 1})
    assert (acme.limit, acme.per_arg) == (3, None)
    assert len(share.for_args({"tenant_id": "x" * 10_000}).key) < 100  # a hostile value is hashed
    assert Cap("one", 1).for_args({"tenant_id": "acme"}) == Cap("one", 1)


async def test_one_tenants_burst_leaves_room_for_the_others(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    """Tenant A enqueues 40 jobs, then B 3: with no tenant holding more than 2 of the worker's 4 places,
    B's jobs start among the first, not after A's burst (which alone would take 2 s)."""
    for _ in range(40):
        await client.enqueue(app.TENANT_WORK, app.TenantArgs(tenant="a", seconds=0.2))
    b_jobs = {(await client.enqueue(app.TENANT_WORK, app.TenantArgs(tenant="b", seconds=0.2))).id for _ in range(3)}
    await run_worker()
    starts = [e["job_id"] for e in await effects(pool, "start")]
    assert len(starts) == 43
    b_ranks = [rank for rank, job_id in enumerate(starts) if job_id in b_jobs]
    assert max(b_ranks) < 12, b_ranks
    counted = await pool.fetchval("SELECT max(counted_attempts) FROM millrace_jobs")
    assert counted == 1  # the jobs held back spent no attempt
