"""Dead letters: inspected and retried by a person, with a fresh budget and the history kept."""

from __future__ import annotations

import json

from millrace import NoArgs, Pool, store
from millrace.client import JobClient
from tests.cli_run import millrace
from tests.conftest import RunWorker, attempt_outcomes
from tests.sample import app


async def test_dead_letter_retried_to_success(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, run_worker: RunWorker
) -> None:
    """Three failed attempts (the whole budget), then `millrace dead retry ID`: attempt 4 succeeds."""
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=3))
    await run_worker()
    code, out, _ = await millrace(database_url, redis_url, "dead", "list", "--json")
    assert code == 0
    assert [j["id"] for j in json.loads(out)] == [enqueued.id]

    code, out, err = await millrace(database_url, redis_url, "dead", "retry", enqueued.id)
    assert code == 0, err
    assert "requeued 1 dead job(s), 1 delivered" in out
    await run_worker()

    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
        attempts = await store.jobs.list_attempts(conn, enqueued.id)
    assert (job.status, job.attempts, job.attempt_base) == ("succeeded", 4, 3)
    assert attempt_outcomes(attempts) == ["retrying", "retrying", "dead", "succeeded"]


async def test_bulk_retry_by_function_and_error_type(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, run_worker: RunWorker
) -> None:
    flaky = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up")) for _ in range(3)]
    hung = await client.enqueue(app.HANG, NoArgs())
    await run_worker()
    assert len(await store.jobs.list_jobs(pool, status="dead")) == 4

    code, out, err = await millrace(
        database_url, redis_url, "dead", "retry", "--function", "flaky", "--error-type", "PermissionError"
    )
    assert code == 0, err
    assert "requeued 3" in out
    await run_worker()
    async with pool.acquire() as conn:
        assert {(await store.jobs.get_job(conn, j.id)).status for j in flaky} == {"succeeded"}
        assert (await store.jobs.get_job(conn, hung.id)).status == "dead"


async def test_retrying_a_job_that_is_not_dead_says_so(database_url: str, redis_url: str) -> None:
    code, _, err = await millrace(database_url, redis_url, "dead", "retry", "no-such-job")
    assert code == 1
    assert "not dead, or unknown: no-such-job" in err


async def test_jobs_show_lists_every_attempt(
    client: JobClient, database_url: str, redis_url: str, run_worker: RunWorker
) -> None:
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))
    await run_worker()
    code, out, _ = await millrace(database_url, redis_url, "jobs", "show", enqueued.id, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["status"] == "succeeded"
    assert [a["outcome"] for a in shown["attempt_history"]] == ["retrying", "succeeded"]
    assert shown["attempt_history"][0]["error_type"] == "ConnectionError"


async def test_status_counts_by_queue(
    client: JobClient, database_url: str, redis_url: str, run_worker: RunWorker
) -> None:
    await client.enqueue(app.NOOP, NoArgs())
    await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=9, error="give_up"))
    await run_worker()
    await client.enqueue(app.NOOP, NoArgs())
    code, out, _ = await millrace(database_url, redis_url, "status", "--json")
    assert code == 0
    (testq,) = json.loads(out)["queues"]
    assert testq["counts"] == {"succeeded": 1, "dead": 1, "queued": 1}
    assert testq["oldest_waiting_s"] is not None


async def test_enqueue_command_refuses_bad_arguments(database_url: str, redis_url: str) -> None:
    code, _, err = await millrace(database_url, redis_url, "enqueue", "send_welcome_email", "--args", '{"user_id": 0}')
    assert code == 2
    assert "user_id: Input should be greater than 0" in err
