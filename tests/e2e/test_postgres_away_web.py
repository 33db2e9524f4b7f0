"""PostgreSQL stopped under the web process: 503 with Retry-After, never a 500; back when it is."""

from __future__ import annotations

import pytest

import db
from millrace import store
from settings import Settings
from tests.processes import wait_for
from tests.servers import PrivatePostgres
from tests.web.conftest import serving

pytestmark = pytest.mark.e2e


async def migrate_app(database_url: str) -> None:
    """The runtime's and the application's migrations: the web service's tables."""
    conn = await store.pool.connect(database_url)
    try:
        await store.migrate.apply_migrations(conn, [db.MIGRATIONS])
    finally:
        await conn.close()


async def test_the_web_process_answers_503_while_postgres_is_away(
    private_postgres: PrivatePostgres, redis_url: str
) -> None:
    await migrate_app(private_postgres.url)
    async with serving(Settings(database_url=private_postgres.url, redis_url=redis_url)) as http:
        created = await http.post("/users", json={"email": "before@example.com", "name": "Before"})
        assert created.status_code == 201
        token = {"Authorization": f"Bearer {created.json()['api_token']}"}

        private_postgres.stop()
        for method, path, body in [
            ("POST", "/users", {"email": "during@example.com", "name": "During"}),
            ("GET", f"/users/{created.json()['id']}", None),
            ("POST", "/password-resets", {"email": "before@example.com"}),
        ]:
            response = await http.request(method, path, json=body, headers=token)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["Retry-After"] == "5"
        assert (await http.get("/healthz")).status_code == 503

        private_postgres.start()

        async def signs_up_again() -> bool:
            again = await http.post("/users", json={"email": "after@example.com", "name": "After"})
            return again.status_code == 201

        await wait_for(signs_up_again, timeout_s=30, what="signups after PostgreSQL returned")
        assert (await http.get("/healthz")).status_code == 200


async def test_the_web_process_started_while_postgres_is_away_answers_503_then_serves(
    private_postgres: PrivatePostgres, redis_url: str
) -> None:
    """Started during a database outage (or with PostgreSQL full), it comes up rather than crash-loop."""
    await migrate_app(private_postgres.url)
    private_postgres.stop()
    async with serving(Settings(database_url=private_postgres.url, redis_url=redis_url)) as http:
        assert (await http.get("/healthz")).status_code == 503
        signup = await http.post("/users", json={"email": "during@example.com", "name": "During"})
        assert signup.status_code == 503, signup.text
        private_postgres.start()

        async def signs_up() -> bool:
            again = await http.post("/users", json={"email": "after@example.com", "name": "After"})
            return again.status_code == 201

        await wait_for(signs_up, timeout_s=30, what="signups once PostgreSQL is up")
        assert (await http.get("/healthz")).status_code == 200
