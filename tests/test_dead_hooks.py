"""A job's dead hook: the application hears once that its job is dead for good, however it died, before
that end is recorded."""

from __future__ import annotations

from millrace import JobClient, Pool, store
from tests.conftest import RunWorker, effects
from tests.sample import app


async def test_a_job_that_runs_out_of_attempts_calls_its_hook_once(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.DOOMED, app.DoomedArgs())
    await run_worker()
    assert (await store.jobs.get_job(pool, enqueued.id)).status == "dead"
    assert [e["kind"] for e in await effects(pool) if e["kind"].startswith("dead:")] == [
        "dead:ConnectionError: provider down"
    ]


async def test_a_job_that_gives_up_calls_its_hook_at_once(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    await client.enqueue(app.DOOMED, app.DoomedArgs(error="give_up"))
    await run_worker()
    kinds = [e["kind"] for e in await effects(pool)]
    assert kinds == ["dead:PermissionError: not allowed"]


async def test_a_job_whose_attempts_were_spent_by_dead_workers_calls_its_hook_without_running(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.DOOMED, app.DoomedArgs())
    # as if three workers had died under it: every attempt of its budget counted, none recorded as ended
    await pool.execute("UPDATE millrace_jobs SET counted_attempts = 3, attempts = 3 WHERE id = $1", enqueued.id)
    await run_worker()
    kinds = [e["kind"] for e in await effects(pool)]
    assert kinds == ["dead:AttemptsExhausted: " + str((await store.jobs.get_job(pool, enqueued.id)).last_error)]
