"""Scenario 3, Redis restarted without persistence while it held the whole queue, a poison job among it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from millrace import JobClient, NoArgs, Pool, store
from tests.chaos.harness import chaos_only, pass_line, pick, tally, wait_all_final
from tests.processes import Supervisor, processes
from tests.sample import app
from tests.servers import PrivateRedis

pytestmark = [pytest.mark.e2e, chaos_only]

JOBS = int(pick(2_000, 20_000))
WORKERS = 2
FINISH_BOUND_S = 300


async def test_a_queue_lost_with_redis_comes_back_from_postgres(pool: Pool, database_url: str, tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path)
    redis_server.start()
    try:
        async with JobClient.open(redis_url=redis_server.url, pool=pool) as client:
            poison = await client.enqueue(app.KILL_OWN_WORKER, NoArgs())
            for _ in range(JOBS):
                await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
            assert await client.redis.zcard(app.TESTQ.redis_key) == JOBS + 1
        redis_server.stop()  # SIGKILL, and no file to come back from
        redis_server.start()
        restarted_at = time.monotonic()
        async with (
            processes(database_url, redis_server.url, tmp_path) as start,
            Supervisor(start, "arq", "tests.sample.worker.NoCronWorker", copies=WORKERS) as supervisor,
        ):
            await wait_all_final(pool, JOBS + 1, timeout_s=FINISH_BOUND_S)
            finished_in = time.monotonic() - restarted_at
    finally:
        redis_server.stop()
    result = await tally(pool)
    assert result.statuses["succeeded"] == JOBS, result.statuses
    record = await store.jobs.get_job(pool, poison.id)
    assert (record.status, record.counted_attempts) == ("dead", app.POISON_POLICY.attempts + 1)
    runs = await pool.fetchval("SELECT count(*) FROM test_effects WHERE kind = 'ran'")
    # a body runs again only after its attempt was lost with a worker the poison killed
    lost = await pool.fetchval(
        """SELECT count(*) FROM millrace_job_attempts a JOIN millrace_jobs j ON j.id = a.job_id
           WHERE j.function = 'flaky' AND a.outcome = 'lost'"""
    )
    assert JOBS <= runs <= JOBS + lost, (runs, lost)
    pass_line(
        "3 redis restarted empty",
        jobs=JOBS,
        lost=0,
        all_finished_after_restart_s=f"{finished_in:.1f}",
        bodies_run=runs,
        rerun_after_a_lost_attempt=runs - JOBS,
        poison=f"dead after {record.counted_attempts} counted attempts, {len(supervisor.deaths)} worker deaths",
    )
