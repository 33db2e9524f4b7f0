"""Each user reaches only their own data; the status page and the API docs are the operator's."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from settings import Settings
from tests.web.conftest import OPERATOR_PASSWORD, serving


async def sign_up(http: httpx.AsyncClient, email: str) -> tuple[int, dict[str, str]]:
    created = (await http.post("/users", json={"email": email, "name": "N"})).json()
    return created["id"], {"Authorization": f"Bearer {created['api_token']}"}


async def test_a_user_reads_their_own_data_with_their_token(http: httpx.AsyncClient) -> None:
    user_id, token = await sign_up(http, "own@example.com")
    assert (await http.get(f"/users/{user_id}", headers=token)).json()["email"] == "own@example.com"
    assert (await http.get(f"/users/{user_id}/notifications", headers=token)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/users/{other}", None),
        ("GET", "/users/{other}/notifications", None),
        ("PUT", "/users/{other}/preferences", {"in_app": True}),
        ("POST", "/tasks", {"title": "for someone else", "assignee_id": "{other}"}),
    ],
)
async def test_another_users_data_is_refused(http: httpx.AsyncClient, method: str, path: str, body: Any) -> None:
    _, token = await sign_up(http, "mallory@example.com")
    other, _ = await sign_up(http, "victim@example.com")
    if body and body.get("assignee_id") == "{other}":
        body = {**body, "assignee_id": other}
    response = await http.request(method, path.format(other=other), json=body, headers=token)
    assert response.status_code == 403


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer not-a-token", "Basic b3BlcmF0b3I6eA=="])
async def test_a_missing_or_wrong_token_is_refused(http: httpx.AsyncClient, authorization: str | None) -> None:
    user_id, _ = await sign_up(http, "someone@example.com")
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get(f"/users/{user_id}/notifications", headers=headers)
    assert response.status_code in (401, 403) if authorization == "Bearer" else response.status_code == 401


@pytest.mark.parametrize("path", ["/status/", "/docs", "/openapi.json"])
async def test_operator_pages_need_the_operator_password(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 401
    assert (await http.get(path, auth=("operator", "wrong"))).status_code == 401
    assert (await http.get(path, auth=("admin", OPERATOR_PASSWORD))).status_code == 401
    assert (await http.get(path, auth=("operator", OPERATOR_PASSWORD))).status_code == 200


@pytest.mark.parametrize("path", ["/status/", "/docs", "/openapi.json"])
async def test_operator_pages_are_closed_without_a_configured_password(
    database_url: str, redis_url: str, path: str
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, operator_password_hash=None)
    async with serving(settings) as http:
        assert (await http.get(path)).status_code == 401
        assert (await http.get(path, auth=("operator", ""))).status_code == 401
        assert (await http.get(path, auth=("operator", OPERATOR_PASSWORD))).status_code == 401


async def test_the_token_is_never_stored_in_clear(http: httpx.AsyncClient, database_url: str) -> None:
    import asyncpg

    created = (await http.post("/users", json={"email": "t@example.com", "name": "T"})).json()
    conn = await asyncpg.connect(database_url)
    try:
        dump = str(await conn.fetch("SELECT * FROM api_tokens")) + str(await conn.fetch("SELECT * FROM users"))
    finally:
        await conn.close()
    assert created["api_token"] not in dump
