"""Scenario 5, poison in a normal load: a job that kills its worker, one that hangs, one that blocks the
event loop and a corrupt payload. Each ends dead within its policy, never two copies at once, and the
normal jobs' p95 latency stays within twice its value without them."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from pathlib import Path

import pytest

from millrace import JobClient, NoArgs, Pool, store
from millrace.records import AttemptRecord
from tests.chaos.harness import all_final, chaos_only, pass_line, pick, wait_all_final
from tests.processes import Supervisor, processes, wait_for
from tests.sample import app
from tests.test_payloads import POISONED, plant

pytestmark = [pytest.mark.e2e, chaos_only]

RATE_PER_S = 20
PHASE_S = pick(20, 120)
POISON_ROUNDS = int(pick(1, 3))
WORKERS = 3


async def produce(client: JobClient, seconds: float) -> list[str]:
    ids: list[str] = []
    for _ in range(int(seconds * RATE_PER_S)):
        ids.append((await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))).id)
        await asyncio.sleep(1 / RATE_PER_S)
    return ids


async def poison(client: JobClient, redis_url: str, rounds: int, spread_s: float) -> list[str]:
    ids: list[str] = []
    for round_ in range(rounds):
        ids.append((await client.enqueue(app.KILL_OWN_WORKER, NoArgs())).id)
        ids.append((await client.enqueue(app.HANG, NoArgs())).id)
        ids.append((await client.enqueue(app.BLOCK_LOOP, app.BlockArgs(seconds=60))).id)
        corrupt_id = f"corrupt-{round_}"
        await plant(redis_url, corrupt_id, POISONED["not JSON"][0])
        ids.append(corrupt_id)
        await asyncio.sleep(spread_s / rounds)
    return ids


async def p95_latency_s(pool: Pool, ids: list[str]) -> float:
    """Enqueue to finish, for the normal jobs: what their users wait."""
    rows = await pool.fetch(
        "SELECT extract(epoch FROM finished_at - enqueued_at) AS s FROM millrace_jobs WHERE id = ANY($1::text[])", ids
    )
    return statistics.quantiles([float(r["s"]) for r in rows], n=20)[-1]


async def never_two_at_once(pool: Pool, job_id: str) -> None:
    """Each attempt started after the one before it had ended: by its finish, or by its worker's stop."""
    attempts: list[AttemptRecord] = await store.jobs.list_attempts(pool, job_id)
    for before, after in itertools.pairwise(attempts):
        ended = before.finished_at
        if ended is None and before.worker is not None:
            ended = await pool.fetchval("SELECT stopped_at FROM millrace_workers WHERE id = $1", before.worker)
        assert ended is not None, (job_id, attempts)
        assert after.started_at is not None, (job_id, attempts)
        assert after.started_at >= ended, (job_id, before, after)


async def test_poison_is_contained_and_the_normal_load_hardly_notices(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with (
        processes(database_url, redis_url, tmp_path) as start,
        Supervisor(start, "arq", "tests.sample.worker.NoCronWorker", copies=WORKERS) as supervisor,
    ):
        baseline_ids = await produce(client, PHASE_S)
        await wait_for(lambda: all_final(pool, len(baseline_ids)), timeout_s=60, what="the baseline load")
        baseline_p95 = await p95_latency_s(pool, baseline_ids)

        loaded_ids, poison_ids = await asyncio.gather(
            produce(client, PHASE_S), poison(client, redis_url, POISON_ROUNDS, PHASE_S / 2)
        )
        expected = len(baseline_ids) + len(loaded_ids) + len(poison_ids)
        await wait_all_final(pool, expected, timeout_s=120)
        poisoned_p95 = await p95_latency_s(pool, loaded_ids)

    normal = await pool.fetchval(
        "SELECT count(*) FROM millrace_jobs WHERE id = ANY($1::text[]) AND status = 'succeeded'",
        baseline_ids + loaded_ids,
    )
    assert normal == len(baseline_ids) + len(loaded_ids)
    for job_id in poison_ids:
        record = await store.jobs.get_job(pool, job_id)
        assert record.status == "dead", record
        assert record.counted_attempts <= app.POISON_POLICY.attempts + 1, record
        await never_two_at_once(pool, job_id)
    assert poisoned_p95 <= 2 * baseline_p95, (baseline_p95, poisoned_p95)
    pass_line(
        "5 poison mix",
        normal_jobs=normal,
        poison_jobs=len(poison_ids),
        all_dead_within_policy=True,
        two_copies_at_once=0,
        p95_without_poison_s=f"{baseline_p95:.3f}",
        p95_with_poison_s=f"{poisoned_p95:.3f}",
        ratio=f"{poisoned_p95 / baseline_p95:.2f}",
        worker_deaths=len(supervisor.deaths),
    )
