"""Caps across every worker: at most `limit` jobs of a cap run at once; one held back spends no attempt;
a place whose holder died frees itself."""

from __future__ import annotations

import asyncio

import pytest

from millrace import JobClient, Pool, caps
from millrace.caps import Cap, Full
from millrace.queues import Queue
from tests.conftest import RunWorker
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
