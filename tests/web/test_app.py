"""The demo web app in process: signups, password resets, the status page."""

from __future__ import annotations

import httpx

from millrace import JobClient, Pool, store
from queues import EMAILS
from tests.web.conftest import OPERATOR_PASSWORD


async def test_password_reset_does_not_reveal_who_has_an_account(http: httpx.AsyncClient, pool: Pool) -> None:
    await http.post("/users", json={"email": "known@example.com", "name": "Known"})
    jobs_before = len(await store.jobs.list_jobs(pool))
    unknown = await http.post("/password-resets", json={"email": "nobody@example.com"})
    known = await http.post("/password-resets", json={"email": "known@example.com"})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    resets = await store.jobs.list_jobs(pool, function="send_password_reset_email")
    assert len(resets) == 1
    assert len(await store.jobs.list_jobs(pool)) == jobs_before + 1


async def test_signup_that_fails_enqueues_nothing(http: httpx.AsyncClient, pool: Pool) -> None:
    assert (await http.post("/users", json={"email": "dup@example.com", "name": "A"})).status_code == 201
    jobs_after_first = len(await store.jobs.list_jobs(pool))
    assert (await http.post("/users", json={"email": "dup@example.com", "name": "B"})).status_code == 409
    assert len(await store.jobs.list_jobs(pool)) == jobs_after_first


async def test_status_page_shows_queue_counts(http: httpx.AsyncClient) -> None:
    await http.post("/users", json={"email": "status@example.com", "name": "<b>S</b>"})
    operator = ("operator", OPERATOR_PASSWORD)
    page = await http.get("/status/", auth=operator)
    assert page.status_code == 200
    assert '<td class="l">emails</td>' in page.text
    counts = (await http.get("/status/", params={"format": "json"}, auth=operator)).json()
    (emails,) = [q for q in counts["queues"] if q["queue"] == "emails"]
    assert emails["queued"] == 2  # welcome and admin emails; no worker runs in this test


async def test_a_full_queue_answers_503_with_retry_after_and_keeps_nothing(
    http: httpx.AsyncClient, pool: Pool, client: JobClient
) -> None:
    """The emails queue holds its max_backlog (stand-in jobs in Redis): a sign-up, whose welcome email
    would go there, is refused whole, its user rolled back with the job."""
    backlog = EMAILS.max_backlog
    assert backlog is not None
    for start in range(0, backlog, 10_000):
        await client.redis.zadd(EMAILS.redis_key, {f"stand-in-{n}": 0 for n in range(start, start + 10_000)})
    answer = await http.post("/users", json={"email": "late@example.com", "name": "Late"})
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {"detail": "too much work is waiting; try again shortly"}
    assert await pool.fetchval("SELECT count(*) FROM users WHERE email = 'late@example.com'") == 0
    assert await store.jobs.list_jobs(pool) == []
    await client.redis.delete(EMAILS.redis_key)
    assert (await http.post("/users", json={"email": "late@example.com", "name": "Late"})).status_code == 201
