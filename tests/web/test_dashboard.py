"""The dashboard over HTTP, in process: logins, roles, CSRF, hostile input, redaction and metrics."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import argon2
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from millrace import NoArgs, Pool, operations, store
from millrace.client import JobClient
from settings import Settings
from tests.conftest import RunWorker
from tests.processes import wait_for
from tests.sample import app
from tests.web.conftest import OPERATOR_HASH, OPERATOR_PASSWORD, serving
from web.app import app_from_environment

VIEWER_PASSWORD = "look but do not touch"
VIEWER_HASH = argon2.PasswordHasher().hash(VIEWER_PASSWORD)


@pytest.fixture
async def web(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        operator_password_hash=OPERATOR_HASH,
        viewer_password_hash=VIEWER_HASH,
        storage_folder=tmp_path / "files",
        environment="development",
    )
    async with serving(settings) as client:
        yield client


async def log_in(web: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    page = await web.get("/admin/login")
    token = _csrf(page.text)
    return await web.post("/admin/login", data={"csrf": token, "name": name, "password": password})


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def test_every_page_asks_for_a_login_first(web: httpx.AsyncClient) -> None:
    for path in ("/admin/", "/admin/jobs", "/admin/errors", "/admin/workers", "/admin/cron", "/admin/audit"):
        answer = await web.get(path)
        assert (answer.status_code, answer.headers["location"]) == (303, "/admin/login"), path
    assert (await web.post("/admin/actions/pause", data={"queue": "emails"})).status_code == 401
    assert (await web.get("/")).headers["location"] == "/admin/"


async def test_a_wrong_password_is_refused_and_repeated_guesses_are_slowed(web: httpx.AsyncClient) -> None:
    assert (await log_in(web, "operator", "guess")).status_code == 401
    assert (await log_in(web, "nobody", OPERATOR_PASSWORD)).status_code == 401
    for _ in range(3):
        await log_in(web, "operator", "guess")
    answer = await log_in(web, "operator", OPERATOR_PASSWORD)  # right, but after five failures
    assert answer.status_code == 429
    assert (await web.get("/admin/")).status_code == 303


async def test_the_operator_logs_in_and_sees_the_queues(web: httpx.AsyncClient) -> None:
    answer = await log_in(web, "operator", OPERATOR_PASSWORD)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    page = await web.get("/admin/")
    assert page.status_code == 200
    for queue in ("emails", "webhooks", "bulk"):
        assert f'data-queue="{queue}"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_an_action_without_the_csrf_token_is_refused(web: httpx.AsyncClient, pool: Pool) -> None:
    await log_in(web, "operator", OPERATOR_PASSWORD)
    assert (await web.post("/admin/actions/pause", data={"queue": "emails"})).status_code == 403
    wrong = await web.post("/admin/actions/pause", data={"queue": "emails", "csrf": "forged"})
    assert wrong.status_code == 403
    assert await store.queues.paused_queues(pool) == {}
    token = _csrf((await web.get("/admin/")).text)
    assert (await web.post("/admin/actions/pause", data={"queue": "emails", "csrf": token})).status_code == 303
    assert set(await store.queues.paused_queues(pool)) == {"emails"}


async def test_the_read_only_role_sees_but_cannot_act(web: httpx.AsyncClient, pool: Pool) -> None:
    assert (await log_in(web, "viewer", VIEWER_PASSWORD)).status_code == 303
    page = await web.get("/admin/")
    assert page.status_code == 200
    assert "Pause</button>" not in page.text
    token = _csrf(page.text)  # the logout form's: a viewer's session has a token too
    answer = await web.post("/admin/actions/pause", data={"queue": "emails", "csrf": token})
    assert answer.status_code == 403
    assert await store.queues.paused_queues(pool) == {}


async def test_an_operator_aborts_a_job_and_a_viewer_cannot(
    web: httpx.AsyncClient, client: JobClient, pool: Pool
) -> None:
    """The worker's side of an abort is tests/test_abort.py's; here, who may ask, and what the page says."""
    waiting = await client.enqueue(app.NOOP, NoArgs(), delay_s=60)
    await log_in(web, "viewer", VIEWER_PASSWORD)
    token = _csrf((await web.get(f"/admin/jobs/{waiting.id}")).text)
    refused = await web.post("/admin/actions/abort-job", data={"job_id": waiting.id, "csrf": token})
    assert refused.status_code == 403
    await web.post("/admin/logout", data={"csrf": token})
    await log_in(web, "operator", OPERATOR_PASSWORD)
    token = _csrf((await web.get(f"/admin/jobs/{waiting.id}")).text)
    answer = await web.post("/admin/actions/abort-job", data={"job_id": waiting.id, "csrf": token})
    assert answer.status_code == 303
    page = await web.get(answer.headers["location"])
    assert "it had not started: it was cancelled" in page.text
    async with pool.acquire() as conn:
        assert (await store.jobs.get_job(conn, waiting.id)).status == "cancelled"


async def test_hostile_input_gets_a_clear_answer(web: httpx.AsyncClient) -> None:
    await log_in(web, "operator", OPERATOR_PASSWORD)
    for path in ("/admin/jobs/..%2F..%2Fetc%2Fpasswd", "/admin/jobs/%00", "/admin/jobs/" + "é" * 300):
        assert (await web.get(path)).status_code == 404, path
    bad = await web.get("/admin/jobs", params={"since": "yesterday", "status": "exploded"})
    assert bad.status_code == 422
    assert "not a date" in bad.text
    for search in ("' OR 1=1 --", "x=" + "9" * 40, "=", "a=b=c", "\x00"):
        assert (await web.get("/admin/jobs", params={"q": search})).status_code in (200, 422), search
    assert (await web.get("/admin/jobs", params={"before": "garbage"})).status_code == 422
    token = _csrf((await web.get("/admin/")).text)
    for queue in ("no-such-queue", "", "x" * 5000):
        answer = await web.post("/admin/actions/pause", data={"queue": queue, "csrf": token})
        assert answer.status_code == 422, queue
    for days in ("0", "²", "-1", "1e9"):
        answer = await web.post("/admin/actions/purge", data={"older_than_days": days, "csrf": token})
        assert answer.status_code == 422, days
    for query in (
        {"q": "a=²"},
        {"q": "a=--5"},
        {"since": "0001-01-01T00:00+05:00"},
        {"until": "9999-12-31T23:59-05:00"},
        {"before": "0001-01-01T00:00+05:00|x"},
    ):
        assert (await web.get("/admin/jobs", params=query)).status_code in (200, 422), query
    assert (await web.get("/admin/bulk/99999999999999999999")).status_code == 404
    steered = await web.post("/admin/actions/cancel-job", data={"job_id": "../../x?y#z", "csrf": token})
    assert steered.headers["location"].endswith("/admin/jobs/..%2F..%2Fx%3Fy%23z")


async def test_retrying_what_a_filter_shows_retries_only_that(
    web: httpx.AsyncClient, client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    shown, other = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up")) for _ in range(2)]
    await run_worker()
    await log_in(web, "operator", OPERATOR_PASSWORD)
    query = {"status": "dead", "q": shown.id}
    page = await web.get("/admin/jobs", params=query)
    assert other.id not in page.text
    token = _csrf(page.text)
    answer = await web.post("/admin/actions/retry-matching", params=query, data={"csrf": token})
    assert answer.status_code == 303

    async def retried() -> bool:
        return (await store.jobs.get_job(pool, shown.id)).status == "queued"

    await wait_for(retried, timeout_s=5, what="the bulk retry to requeue the job the filter shows")
    assert (await store.jobs.get_job(pool, other.id)).status == "dead"


async def test_a_redacted_field_cannot_be_searched_for(web: httpx.AsyncClient, client: JobClient, pool: Pool) -> None:
    """A search that finds the job would confirm a guess at a value the page hides."""
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    await pool.execute("UPDATE millrace_jobs SET args = $2 WHERE id = $1", enqueued.id, {"password": "hunter2"})
    await log_in(web, "viewer", VIEWER_PASSWORD)
    wrong = await web.get("/admin/jobs", params={"q": "password=wrong"})
    for search in ("password=hunter2", "PASSWORD = hunter2", "user_password=hunter2"):
        answer = await web.get("/admin/jobs", params={"q": search})
        assert answer.status_code == 422, search
        assert "redacted field" in answer.text
        # the search is not made: a right guess and a wrong one list the same jobs
        assert answer.text.count(enqueued.id) == wrong.text.count(enqueued.id)


async def test_guesses_are_slowed_everywhere_the_password_is_asked(web: httpx.AsyncClient) -> None:
    """Guesses sent at once count before they are checked; Basic auth (/metrics) counts them too."""
    page = await web.get("/admin/login")
    token = _csrf(page.text)
    guesses = [
        web.post("/admin/login", data={"csrf": token, "name": "operator", "password": f"guess {n}"}) for n in range(12)
    ]
    answers = [a.status_code for a in await asyncio.gather(*guesses)]
    assert answers.count(401) == 5, answers
    assert answers.count(429) == 7, answers

    for n in range(5):
        assert (await web.get("/metrics", auth=("operator", f"guess {n}"))).status_code == 401
    assert (await web.get("/metrics", auth=("operator", OPERATOR_PASSWORD))).status_code == 401  # locked out


async def test_a_viewer_logs_out_and_the_session_ends(web: httpx.AsyncClient) -> None:
    await log_in(web, "viewer", VIEWER_PASSWORD)
    token = _csrf((await web.get("/admin/")).text)
    assert (await web.post("/admin/logout", data={"csrf": token})).status_code == 303
    assert (await web.get("/admin/")).headers["location"] == "/admin/login"


async def test_a_session_ends_when_its_password_changes(database_url: str, redis_url: str, tmp_path: Path) -> None:
    secret = "s" * 40

    def settings(operator_hash: str) -> Settings:
        return Settings(
            database_url=database_url,
            redis_url=redis_url,
            operator_password_hash=operator_hash,
            dashboard_session_secret=secret,
            storage_folder=tmp_path / "files",
            environment="development",
        )

    async with serving(settings(OPERATOR_HASH)) as before:
        await log_in(before, "operator", OPERATOR_PASSWORD)
        assert (await before.get("/admin/")).status_code == 200
        cookies = before.cookies
    new_hash = argon2.PasswordHasher().hash("a new password")
    async with serving(settings(new_hash)) as after:
        after.cookies = cookies
        assert (await after.get("/admin/")).headers["location"] == "/admin/login"


async def test_the_web_app_does_not_start_open_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.delenv("OPERATOR_PASSWORD_HASH", raising=False)
    monkeypatch.delenv("DASHBOARD_SESSION_SECRET", raising=False)
    with pytest.raises(SystemExit, match="OPERATOR_PASSWORD_HASH"):
        app_from_environment()
    monkeypatch.setenv("OPERATOR_PASSWORD_HASH", OPERATOR_HASH)
    with pytest.raises(SystemExit, match="DASHBOARD_SESSION_SECRET"):
        app_from_environment()
    monkeypatch.setenv("DASHBOARD_SESSION_SECRET", "x" * 40)
    assert app_from_environment() is not None


async def test_redacted_fields_never_reach_the_page(web: httpx.AsyncClient, client: JobClient, pool: Pool) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    args = {"user_id": 7, "password": "hunter2", "nested": {"Stripe-API-Key": "sk_live_1", "note": "visible"}}
    await pool.execute("UPDATE millrace_jobs SET args = $2 WHERE id = $1", enqueued.id, args)
    await log_in(web, "operator", OPERATOR_PASSWORD)
    page = await web.get(f"/admin/jobs/{enqueued.id}")
    assert page.status_code == 200
    assert "hunter2" not in page.text
    assert "sk_live_1" not in page.text
    assert "visible" in page.text
    assert "[redacted]" in page.text
    found = await web.get("/admin/jobs", params={"q": "user_id=7"})
    assert enqueued.id in found.text


async def test_retrying_a_dead_job_with_edited_arguments_keeps_the_old_ones(
    web: httpx.AsyncClient, client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    dead = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up"))
    await run_worker()
    await log_in(web, "operator", OPERATOR_PASSWORD)
    token = _csrf((await web.get(f"/admin/jobs/{dead.id}")).text)
    refused = await web.post("/admin/actions/retry-job", data={"job_id": dead.id, "args": "{fail", "csrf": token})
    assert refused.status_code == 422
    assert "not JSON" in refused.text
    copied = '{"fail_times": 0, "password": "[redacted]"}'  # what the page shows, pasted back
    refused = await web.post("/admin/actions/retry-job", data={"job_id": dead.id, "args": copied, "csrf": token})
    assert refused.status_code == 422
    assert "still hold [redacted]" in refused.text
    with pytest.raises(operations.ActionRefused, match="fail_times"):  # checked against the job's declaration
        await operations.retry_one(
            client, dead.id, actor="test", edited_args='{"fail_times": "many"}', refs={app.FLAKY.name: app.FLAKY}
        )
    edited = '{"fail_times": 0, "error": "give_up"}'
    answer = await web.post("/admin/actions/retry-job", data={"job_id": dead.id, "args": edited, "csrf": token})
    assert answer.status_code == 303
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, dead.id)
        history = await conn.fetchval("SELECT args_history FROM millrace_jobs WHERE id = $1", dead.id)
    assert job.status == "succeeded"
    assert job.args["fail_times"] == 0
    assert history[0]["args"]["fail_times"] == 1
    assert history[0]["replaced_by"] == "operator"


async def test_metrics_match_the_records(
    web: httpx.AsyncClient, client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    for _ in range(3):
        await client.enqueue(app.NOOP, NoArgs())
    await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up"))
    await run_worker()
    waiting = await client.enqueue(app.NOOP, NoArgs())  # enqueued, not started
    assert (await web.get("/metrics")).status_code == 401
    answer = await web.get("/metrics", auth=("operator", OPERATOR_PASSWORD))
    assert answer.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    async with pool.acquire() as conn:
        attempts = dict(
            await conn.fetch(
                """SELECT j.function || ':' || a.outcome, count(*) FROM millrace_job_attempts a
                   JOIN millrace_jobs j ON j.id = a.job_id GROUP BY 1"""
            )
        )
    assert value("millrace_jobs_succeeded_total", queue="testq", function="noop") == attempts["noop:succeeded"] == 3
    assert value("millrace_jobs_dead_total", queue="testq", function="flaky") == attempts["flaky:dead"] == 1
    assert value("millrace_jobs_enqueued_total", queue="testq", function="noop") == 4
    assert value("millrace_job_duration_seconds_count", queue="testq", function="noop") == 3
    assert value("millrace_queue_depth", queue="testq", status="queued") == 1
    assert value("millrace_queue_depth", queue="testq", status="dead") == 1
    assert value("millrace_redis_up") == 1
    assert waiting.id
