"""Cron ticks with several real `arq` worker processes: each tick runs once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from millrace import Pool
from tests.conftest import effects
from tests.processes import processes, wait_for

pytestmark = pytest.mark.e2e


async def test_each_tick_runs_once_with_three_workers(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with processes(database_url, redis_url, tmp_path) as start:
        workers = [start("arq", "tests.sample.worker.TestqWorker") for _ in range(3)]
        await asyncio.sleep(6)
    ticks = Counter(r["tick_at"] for r in await effects(pool, "tick"))
    assert len(ticks) >= 3, [w.output() for w in workers]
    assert set(ticks.values()) == {1}, ticks


async def test_missed_tick_runs_once_when_workers_return(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Every worker was down for a minute: three come back, the latest missed tick runs once, no more."""
    last_run = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    await pool.execute(
        "INSERT INTO millrace_cron_ticks (name, tick_at, job_id) VALUES ('every_second', $1, 'before')", last_run
    )
    started_at = datetime.now(UTC)

    async def missed_ticks() -> list[dict[str, Any]]:
        # ticks older than the first worker's start: arq's own scheduler only runs ticks after it
        first_start = await pool.fetchval("SELECT min(started_at) FROM millrace_workers")
        boundary = (first_start or datetime.now(UTC)) - timedelta(seconds=1)
        return [r for r in await effects(pool, "tick") if r["tick_at"] < boundary]

    async with processes(database_url, redis_url, tmp_path) as start:
        for _ in range(3):
            start("arq", "tests.sample.worker.TestqWorker")
        # start-up takes longer on a loaded machine: wait for the catch-up, then long enough for a second
        await wait_for(missed_ticks, timeout_s=30, what="the missed tick to run")
        await asyncio.sleep(3)
    missed = await missed_ticks()
    ticks = Counter(r["tick_at"] for r in await effects(pool, "tick"))
    assert set(ticks.values()) == {1}, ticks  # no tick twice
    # Workers that start more than a second apart may each find a later tick missed (noted in issue #7);
    # what must never happen is a replay of the whole minute of missed ticks.
    assert 1 <= len(missed) <= 3, missed
    assert all(started_at - timedelta(seconds=6) < r["tick_at"] for r in missed), missed
