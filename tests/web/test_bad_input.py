"""Bad requests get a 4xx and a short message, never a 500 and never an echo of the input."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from millrace import Pool, store
from tests.web.conftest import WEBHOOK_SECRET
from web.signatures import sign

BIG = 2**63


async def sign_up(http: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    created = (await http.post("/users", json={"email": "b@example.com", "name": "B"})).json()
    return created["id"], {"Authorization": f"Bearer {created['api_token']}"}


@pytest.mark.parametrize(
    "body",
    [
        {"email": "nul\x00@example.com", "name": "N"},
        {"email": "a@example.com", "name": "N\x00"},
        {"email": "a@example.com", "name": "\ud800"},
        {"email": "a@example.com", "name": "   "},
        {"email": "a@example.com", "name": "two\nlines"},
        {"email": "a@example.com", "name": "x" * 201},
        {"email": "not-an-address", "name": "N"},
        {"email": ["a@example.com"], "name": "N"},
    ],
)
async def test_unstorable_or_invalid_signups_are_422(http: httpx.AsyncClient, pool: Pool, body: dict[str, Any]) -> None:
    response = await http.post("/users", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert await store.jobs.list_jobs(pool) == []


async def test_a_422_does_not_echo_the_input(http: httpx.AsyncClient) -> None:
    response = await http.post("/password-resets", json={"email": "x" * 60_000})
    assert response.status_code == 422
    assert len(response.content) < 2000
    assert "xxxxxxxxxx" not in response.text


async def test_emails_are_one_account_whatever_their_case(http: httpx.AsyncClient) -> None:
    assert (await http.post("/users", json={"email": "Case@Example.com", "name": "A"})).status_code == 201
    assert (await http.post("/users", json={"email": "case@example.COM", "name": "B"})).status_code == 409


@pytest.mark.parametrize("user_id", [str(BIG), str(-1), "0", "true", "1e3"])
async def test_ids_out_of_range_are_422(http: httpx.AsyncClient, user_id: str) -> None:
    _, token = await sign_up(http)
    assert (await http.get(f"/users/{user_id}", headers=token)).status_code == 422


@pytest.mark.parametrize("assignee", [BIG, True, "1", 1.5, None])
async def test_a_task_for_a_bad_assignee_id_is_422(http: httpx.AsyncClient, assignee: Any) -> None:
    _, token = await sign_up(http)
    response = await http.post("/tasks", json={"title": "t", "assignee_id": assignee}, headers=token)
    assert response.status_code == 422


async def test_a_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    response = await http.post("/users", json={"email": "a@example.com", "name": "x" * 70_000})
    assert response.status_code == 413


async def test_a_streamed_body_over_the_limit_is_413(http: httpx.AsyncClient) -> None:
    """No Content-Length to refuse early: the body is counted as it arrives."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "a@example.com", "name": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    response = await http.post("/users", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b'{"title": "t", "assignee_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"title": "t", "assignee_id": ' + b"9" * 5000 + b"}",
    ],
    ids=["nested-past-the-recursion-limit", "integer-of-5000-digits"],
)
async def test_json_the_service_cannot_read_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    _, token = await sign_up(http)
    response = await http.post("/tasks", content=body, headers={**token, "Content-Type": "application/json"})
    assert response.status_code == 400


@pytest.mark.parametrize("url", ["http://xn--/", "http://[::1", "ftp://example.com/", "http:///path", "", "not a url"])
async def test_a_slack_url_that_is_not_an_http_url_is_422(http: httpx.AsyncClient, url: str) -> None:
    user_id, token = await sign_up(http)
    body = {"slack": True, "slack_webhook_url": url}
    response = await http.put(f"/users/{user_id}/preferences", json=body, headers=token)
    assert response.status_code == 422


def signed(body: bytes) -> dict[str, str]:
    return {"Stripe-Signature": sign(body, WEBHOOK_SECRET, int(time.time())), "Content-Type": "application/json"}


@pytest.mark.parametrize("header", ["t=²,v1=abc", "t=" + "9" * 400 + ",v1=abc", "t=,v1=", "v1=abc", "t=1"])
async def test_malformed_signature_headers_are_400(http: httpx.AsyncClient, header: str) -> None:
    response = await http.post(
        "/webhooks/stripe", content=b"{}", headers={b"Stripe-Signature": header.encode("latin-1")}
    )
    assert response.status_code == 400


VALID = {"id": "evt_1", "type": "invoice.paid", "created": 1_700_000_000, "data": {"object": {}}}


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({**VALID, "created": 10**20}).encode(),
        json.dumps({**VALID, "created": -1}).encode(),
        json.dumps({**VALID, "created": 1.5}).encode(),
        json.dumps({**VALID, "created": "1700000000"}).encode(),
        b'{"id": "evt_1", "type": "t", "created": Infinity, "data": {}}',
        b'{"id": "evt_1", "type": "t", "created": NaN, "data": {}}',
        b'{"id": "evt_1", "type": "t", "created": 1, "data": {"amount": 1e400}}',  # reads as infinity
        b'{"id": "evt_1", "type": "t", "created": 1, "data": {"amount": -1e400}}',
        json.dumps({**VALID, "id": "evt\x00"}).encode(),
        json.dumps({**VALID, "data": {"object": {"name": "\ud800"}}}).encode(),
        json.dumps({**VALID, "data": {"object": {"x": "a\x00b"}}}).encode(),
        b'{"id": "evt_1", "type": "t", "created": 1, "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b"\xff\xfe not utf-8",
        json.dumps({**VALID, "id": ""}).encode(),
        json.dumps([VALID]).encode(),
    ],
)
async def test_validly_signed_events_the_service_cannot_store_are_400(
    http: httpx.AsyncClient, pool: Pool, body: bytes
) -> None:
    response = await http.post("/webhooks/stripe", content=body, headers=signed(body))
    assert response.status_code == 400
    assert await pool.fetchval("SELECT count(*) FROM webhook_events") == 0
