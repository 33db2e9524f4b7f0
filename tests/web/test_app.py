"""The demo web app in process (its real lifespan, PostgreSQL and Redis), driven over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from millrace import Pool, store
from settings import Settings
from web.app import create_app


@pytest.fixture
async def http(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=database_url, redis_url=redis_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client


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
    page = await http.get("/status/")
    assert page.status_code == 200
    assert '<td class="l">emails</td>' in page.text
    counts = (await http.get("/status/", params={"format": "json"})).json()
    (emails,) = [q for q in counts["queues"] if q["queue"] == "emails"]
    assert emails["queued"] == 2  # welcome and admin emails; no worker runs in this test
