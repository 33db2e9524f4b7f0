"""Workers whose wall clocks are wrong (libfaketime: one an hour ahead, one 90 s behind; their monotonic
clocks keep time) run every cron tick once and never early by PostgreSQL's clock, skip no tick and run
none from before the first worker started, and keep retries and delays due by Redis's clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from millrace import JobClient, NoArgs, Pool, store
from tests.conftest import effects
from tests.processes import processes, wait_for
from tests.sample import app

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not LIBFAKETIME.exists(), reason="needs libfaketime (.ci/run installs faketime)"),
]

RUN_S = 10
DELAY_S = 3.0
#: a tick may start this much before its time, by PostgreSQL's clock
EARLY_BOUND = timedelta(seconds=1)


def wrong_clock(offset: str) -> dict[str, str]:
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


async def workers_started(pool: Pool, count: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM millrace_workers WHERE stopped_at IS NULL") >= count)


async def test_wrong_wall_clocks_change_no_due_time(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with processes(database_url, redis_url, tmp_path) as start:
        workers = [
            start("arq", "tests.sample.worker.TestqWorker", **wrong_clock("+1h")),
            start("arq", "tests.sample.worker.TestqWorker", **wrong_clock("-90")),
        ]
        await wait_for(lambda: workers_started(pool, 2), timeout_s=60, what="both workers")
        first_started: datetime = await pool.fetchval("SELECT min(started_at) FROM millrace_workers")
        flaky = [(await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))).id for _ in range(8)]
        enqueued_at: datetime = await pool.fetchval("SELECT clock_timestamp()")
        delayed = await client.enqueue(app.NOOP, NoArgs(), delay_s=DELAY_S)
        await asyncio.sleep(RUN_S)
        ended: datetime = await pool.fetchval("SELECT clock_timestamp()")
    logs = "\n".join(worker.output()[-2000:] for worker in workers)

    for kind, every_s in (("tick", 1), ("skip_tick", 2)):  # missed="run_once", and missed="skip"
        check_ticks(await effects(pool, kind), every_s, first_started, ended, logs)

    for job_id in flaky:  # failed once on some worker, retried 0.05 s later by Redis's clock
        assert (await store.jobs.get_job(pool, job_id)).status == "succeeded", logs
    (attempt,) = await store.jobs.list_attempts(pool, delayed.id)
    assert attempt.started_at is not None
    waited = (attempt.started_at - enqueued_at).total_seconds()
    assert DELAY_S - 0.5 <= waited <= DELAY_S + 3, waited


def check_ticks(ticks: list[dict[str, Any]], every_s: int, first_started: datetime, ended: datetime, logs: str) -> None:
    """Each tick ran once, none early by PostgreSQL's clock, none from before the first worker started, and
    none missed in between (but at the edges: the scheduler's warm-up, the run's end)."""
    runs = Counter(row["tick_at"] for row in ticks)
    assert set(runs.values()) == {1}, {tick: n for tick, n in runs.items() if n > 1}
    early = [(row["tick_at"], row["at"]) for row in ticks if row["at"] < row["tick_at"] - EARLY_BOUND]
    assert not early, early
    before_start = [tick for tick in runs if tick < first_started - EARLY_BOUND]
    assert not before_start, before_start
    first = first_started.replace(microsecond=0) + timedelta(seconds=3)
    expected = [first + timedelta(seconds=s) for s in range(int((ended - first).total_seconds()) - 2)]
    missing = [tick for tick in expected if tick.second % every_s == 0 and tick not in runs]
    assert not missing, (missing, logs)
