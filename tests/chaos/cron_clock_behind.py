"""Scenario 8, cron: three workers, one with its wall clock an hour ahead and one 90 s behind (libfaketime),
restarted one at a time (SIGTERM and SIGKILL in turn) and once all together. Every tick runs once and none
more than 1 s early by PostgreSQL's clock; ticks missed while every worker was down are caught up once
where the cron declares `missed="run_once"`, and skipped where it declares `missed="skip"`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from millrace import Pool
from tests.chaos.harness import pass_line, pick
from tests.processes import Process, ProcessFactory

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
CLOCK_BEHIND_S = 90
CLOCK_AHEAD = "+1h"
#: how early a tick may start, by PostgreSQL's clock
EARLY_BOUND = timedelta(seconds=1)
DURATION_S = pick(60, 1800)
RESTART_EVERY_S = pick(7, 45)
ALL_DOWN_S = 5
#: ticks this close to the start or the end are the scheduler's warm-up and shutdown, not checked
EDGE_S = 5


def wrong_clock_env(offset: str) -> dict[str, str]:
    assert LIBFAKETIME.exists(), "scenario 8 needs libfaketime: apt-get install faketime"
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # asyncio's timers keep real time; only the wall clock is wrong
    }


async def run_cron_scenario(pool: Pool, start: ProcessFactory, logs_folder: Path) -> None:
    command = ("arq", "tests.sample.worker.TestqWorker")
    envs = [{}, wrong_clock_env(CLOCK_AHEAD), wrong_clock_env(f"-{CLOCK_BEHIND_S}")]
    launched = datetime.now(UTC)
    workers: list[Process] = [start(*command, **env) for env in envs]
    began = await first_worker_up(pool, since=launched)
    restarts = 0
    all_down: tuple[datetime, datetime] | None = None
    turn = itertools.count()
    deadline = time.monotonic() + DURATION_S
    while time.monotonic() < deadline:
        await asyncio.sleep(RESTART_EVERY_S)
        n = next(turn)
        if all_down is None and time.monotonic() > deadline - DURATION_S / 2:
            down_at = datetime.now(UTC)
            for worker in workers:
                worker.stop()
            await asyncio.sleep(ALL_DOWN_S)
            workers = [start(*command, **env) for env in envs]
            all_down = (down_at, datetime.now(UTC))
            continue
        victim = n % len(workers)
        if n % 2:
            workers[victim].kill()
        else:
            workers[victim].stop()
        workers[victim] = start(*command, **envs[victim])
        restarts += 1
    ended = datetime.now(UTC)
    for worker in workers:
        worker.stop()
    await check_ticks(pool, began, ended, all_down, restarts, read_logs(logs_folder))


async def first_worker_up(pool: Pool, *, since: datetime) -> datetime:
    """When the first worker recorded its start: ticks before it had no scheduler to run them (starting
    three Python processes takes seconds on a busy machine, and `make chaos` runs a lane beside this one)."""
    for _ in range(600):
        started = await pool.fetchval("SELECT min(started_at) FROM millrace_workers WHERE started_at > $1", since)
        if started is not None:
            return started  # type: ignore[no-any-return]  # timestamptz
        await asyncio.sleep(0.1)
    raise AssertionError("no cron worker started within 60 s")


def read_logs(folder: Path) -> list[str]:
    return [path.read_text(errors="replace") for path in folder.glob("process-*.log")]


async def check_ticks(
    pool: Pool,
    began: datetime,
    ended: datetime,
    all_down: tuple[datetime, datetime] | None,
    restarts: int,
    logs: list[str],
) -> None:
    rows = await pool.fetch("SELECT tick_at, job_id, attempt, at FROM test_effects WHERE kind = 'tick'")
    early = [(r["tick_at"], r["at"]) for r in rows if r["at"] < r["tick_at"] - EARLY_BOUND]
    assert not early, early
    runs: dict[datetime, set[str]] = defaultdict(set)
    bodies: dict[tuple[datetime, int], int] = defaultdict(int)
    for row in rows:
        runs[row["tick_at"]].add(row["job_id"])
        bodies[(row["tick_at"], row["attempt"])] += 1
    assert all(len(jobs) == 1 for jobs in runs.values()), {t: j for t, j in runs.items() if len(j) > 1}
    assert set(bodies.values()) == {1}, {k: n for k, n in bodies.items() if n > 1}
    reruns = sum(1 for (_, attempt) in bodies if attempt > 1)  # after an attempt lost with its worker
    first = began.replace(microsecond=0) + timedelta(seconds=EDGE_S)
    last = ended.replace(microsecond=0) - timedelta(seconds=EDGE_S)
    expected = [first + timedelta(seconds=s) for s in range(int((last - first).total_seconds()))]
    # the gap: stopped, down, and the restarted workers' start-up (catch-up runs the latest missed tick)
    in_gap: list[datetime] = []
    if all_down is not None:
        back = await pool.fetchval("SELECT min(started_at) FROM millrace_workers WHERE started_at > $1", all_down[1])
        gap = (all_down[0] - timedelta(seconds=1), back + timedelta(seconds=2))
        in_gap = [t for t in expected if gap[0] <= t <= gap[1]]
    missing = [t for t in expected if t not in runs and t not in in_gap]
    assert not missing, missing
    caught_up = [t for t in in_gap if t in runs]
    skipped = await check_skipped_ticks(pool, expected, in_gap, all_down)
    late_copies_refused = sum(log.count("cron_tick_skipped") for log in logs)
    pass_line(
        "8 cron, clocks +1 h and -90 s",
        ticks_checked=len(expected),
        ran_twice=0,
        missed_outside_the_all_down_gap=0,
        gap_ticks=len(in_gap),
        gap_ticks_caught_up=len(caught_up),
        worker_restarts=restarts,
        reruns_after_a_killed_attempt=reruns,
        late_copies_refused_in_final_logs=late_copies_refused,
        early_ticks=0,
        skip_cron_gap_ticks_skipped=skipped,
    )


async def check_skipped_ticks(
    pool: Pool, expected: list[datetime], in_gap: list[datetime], all_down: tuple[datetime, datetime] | None
) -> int:
    """The `missed="skip"` cron (every other second): each tick once, none early, none missed outside the
    gap, and none of the gap's run (but those enqueued before the workers stopped: arq's scheduler puts a
    tick in Redis up to a second ahead). Returns how many of the gap's ticks were skipped."""
    rows = await pool.fetch("SELECT tick_at, at FROM test_effects WHERE kind = 'skip_tick'")
    runs = Counter(r["tick_at"] for r in rows)
    assert set(runs.values()) <= {1}, {t: n for t, n in runs.items() if n > 1}
    early = [(r["tick_at"], r["at"]) for r in rows if r["at"] < r["tick_at"] - EARLY_BOUND]
    assert not early, early
    due = [t for t in expected if t.second % 2 == 0]
    missing = [t for t in due if t not in runs and t not in in_gap]
    assert not missing, missing
    if all_down is None:
        return 0
    gap_ticks = [t for t in in_gap if t.second % 2 == 0 and all_down[0] + timedelta(seconds=2) < t < all_down[1]]
    ran = [t for t in gap_ticks if t in runs]
    assert not ran, ran
    return len(gap_ticks)
