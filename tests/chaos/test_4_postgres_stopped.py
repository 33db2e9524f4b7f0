"""Scenario 4, PostgreSQL stopped while jobs run: no job succeeds without its record, none dies of it,
and the web process answers 503 with Retry-After meanwhile."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from millrace import JobClient, store
from settings import Settings
from tests.chaos.harness import pass_line, pick, tally, unfinished, wait_all_final
from tests.conftest import migrate
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import PrivatePostgres
from tests.web.conftest import serving

pytestmark = pytest.mark.e2e

JOBS = int(pick(300, 3_000))
DOWN_S = pick(5, 30)
HEALTHY_BOUND_S = 60


async def sign_up_for(web: httpx.AsyncClient, seconds: float) -> Counter[int]:
    """Signups while PostgreSQL is away: each must be told to come back later."""
    answers: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = await web.post("/users", json={"email": f"{uuid.uuid4().hex}@example.com", "name": "During"})
        answers[response.status_code] += 1
        assert response.status_code != 503 or response.headers["Retry-After"] == "5"
        await asyncio.sleep(0.5)
    return answers


async def signs_up(web: httpx.AsyncClient) -> bool:
    response = await web.post("/users", json={"email": f"{uuid.uuid4().hex}@example.com", "name": "After"})
    return response.status_code == 201


async def test_jobs_ride_out_a_postgres_outage(
    private_postgres: PrivatePostgres, redis_url: str, tmp_path: Path
) -> None:
    await migrate(private_postgres.url)
    pool = await store.pool.create_pool(private_postgres.url)
    try:
        async with (
            JobClient.open(redis_url=redis_url, pool=pool) as client,
            processes(private_postgres.url, redis_url, tmp_path) as start,
            serving(Settings(database_url=private_postgres.url, redis_url=redis_url)) as web,
        ):
            ids = [(await client.enqueue(app.SLEEPY, app.SleepArgs(seconds=0.05))).id for _ in range(JOBS)]
            workers = [start("arq", "tests.sample.worker.NoCronWorker") for _ in range(2)]
            await asyncio.sleep(1)
            private_postgres.stop()
            answers = await sign_up_for(web, DOWN_S)
            private_postgres.start()
            back = time.monotonic()
            await wait_all_final(pool, JOBS, timeout_s=HEALTHY_BOUND_S)
            healthy_in = time.monotonic() - back
            await wait_for(lambda: signs_up(web), timeout_s=HEALTHY_BOUND_S, what="the web app to sign users up again")
            assert all(w.popen.poll() is None for w in workers), [w.output() for w in workers]
        result = await tally(pool)
        details = await unfinished(pool)
        ends = await pool.fetch("SELECT DISTINCT job_id FROM test_effects WHERE kind = 'end'")
    finally:
        await pool.close()
    assert set(answers) == {503}, answers  # never a 500, never a hang
    assert result.statuses["succeeded"] == JOBS, (result.statuses, details)
    assert result.statuses["dead"] == 0
    # a body that ended wrote its effect before its record; each such job's record is final
    assert {r["job_id"] for r in ends} <= set(ids)
    pass_line(
        "4 postgres stopped",
        jobs=JOBS,
        postgres_down_s=DOWN_S,
        dead=0,
        succeeded_without_record=0,
        all_done_after_return_s=f"{healthy_in:.1f}",
        web_answers_during_outage=dict(answers),
        worker_exits=0,
    )
