"""A queue's concurrency limit, reached and never exceeded under a burst."""

from __future__ import annotations

import asyncio
from datetime import datetime

from millrace import Pool
from millrace.client import JobClient
from tests.conftest import RunWorker, effects
from tests.sample import app


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak


def test_max_overlap_counts_what_runs_at_once() -> None:
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(6)]
    assert max_overlap([(t[0], t[2]), (t[1], t[3]), (t[2], t[4])]) == 2
    assert max_overlap([(t[0], t[5]), (t[1], t[2]), (t[3], t[4])]) == 2


async def test_concurrency_limit_is_reached_and_never_exceeded(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    await asyncio.gather(*(client.enqueue(app.SLEEPY, app.SleepArgs(seconds=0.2)) for _ in range(24)))
    await run_worker()
    rows = await effects(pool)
    starts = {r["job_id"]: r["at"] for r in rows if r["kind"] == "start"}
    ends = {r["job_id"]: r["at"] for r in rows if r["kind"] == "end"}
    assert len(starts) == len(ends) == 24
    assert max_overlap([(starts[j], ends[j]) for j in starts]) == app.TESTQ.concurrency
