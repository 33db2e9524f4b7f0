"""Signed webhooks and payment events through the real web app and arq workers."""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import db.billing
import db.webhooks
from millrace import Pool
from tests.platform import OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, Platform, running_platform
from tests.processes import wait_for
from web.signatures import sign

pytestmark = pytest.mark.e2e


def event(event_id: str, event_type: str, created: int, obj: dict[str, Any]) -> bytes:
    return json.dumps({"id": event_id, "type": event_type, "created": created, "data": {"object": obj}}).encode()


async def deliver(
    http: httpx.AsyncClient, body: bytes, *, secret: str = WEBHOOK_SECRET, skew_s: int = 0, signature: str | None = None
) -> httpx.Response:
    """Sign at the moment of sending, `skew_s` away from now, as a provider with a wrong clock would."""
    header = signature if signature is not None else sign(body, secret, int(time.time()) + skew_s)
    return await http.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})


async def nothing_written(pool: Pool) -> bool:
    jobs = await pool.fetchval("SELECT count(*) FROM millrace_jobs WHERE function = 'process_webhook_event'")
    return await db.webhooks.count_events(pool) == 0 and jobs == 0


async def test_bad_signatures_are_refused_and_write_nothing(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    body = event("evt_sec", "invoice.paid", int(time.time()), {"id": "in_1"})
    async with running_platform(database_url, redis_url, tmp_path) as platform:
        http = platform.http
        refused = {
            "missing": await http.post("/webhooks/stripe", content=body),
            "forged": await deliver(http, body, secret="whsec_forged"),
            "altered": await deliver(
                http, body.replace(b"in_1", b"in_2"), signature=sign(body, WEBHOOK_SECRET, int(time.time()))
            ),
            "stale": await deliver(http, body, skew_s=-301),
            "future": await deliver(http, body, skew_s=301),
        }
        assert {name: r.status_code for name, r in refused.items()} == dict.fromkeys(refused, 400)
        assert (await deliver(http, b"x" * (256 * 1024 + 1))).status_code == 413
        assert (await http.post("/webhooks/unknown", content=body)).status_code == 404
        assert (await deliver(http, b"{not json")).status_code == 400
        assert await nothing_written(pool)

        rotated = await deliver(http, body, secret=OLD_WEBHOOK_SECRET)
        assert rotated.status_code == 200
        assert rotated.json() == {"received": True, "duplicate": False}
        again = await deliver(http, body)
        assert again.json() == {"received": True, "duplicate": True}
    assert await db.webhooks.count_events(pool) == 1


def storm_events(user_ids: list[int]) -> tuple[list[bytes], dict[int, str], set[str]]:
    """Four events per user, in the order the provider made them; the expected final states; paid invoices."""
    base = int(time.time()) + 1  # after the signups: their trials are the state these events move on from
    bodies: list[bytes] = []
    expected: dict[int, str] = {}
    paid: set[str] = set()
    for u in user_ids:
        meta = {"metadata": {"user_id": str(u)}}

        def invoice(suffix: str, created: int, u: int = u) -> dict[str, Any]:
            return {
                "id": f"in_{u}_{suffix}",
                "amount_due": 1900,
                "currency": "eur",
                "created": created,
                "metadata": {"user_id": str(u)},
            }

        bodies.append(event(f"evt_{u}_1", "checkout.session.completed", base + 1, {**meta, "plan": "pro"}))
        bodies.append(event(f"evt_{u}_2", "invoice.paid", base + 2, invoice("a", base + 2)))
        if u % 2:
            bodies.append(event(f"evt_{u}_3", "invoice.paid", base + 3, invoice("b", base + 3)))
            paid.add(f"in_{u}_b")
        else:
            bodies.append(event(f"evt_{u}_3", "invoice.payment_failed", base + 3, invoice("b", base + 3)))
        if u % 3 == 0:
            bodies.append(event(f"evt_{u}_4", "customer.subscription.deleted", base + 4, meta))
            expected[u] = "canceled"
        else:
            bodies.append(event(f"evt_{u}_4", "invoice.paid", base + 4, invoice("c", base + 4)))
            paid.add(f"in_{u}_c")
            expected[u] = "active"
        paid.add(f"in_{u}_a")
    return bodies, expected, paid


async def sign_up(http: httpx.AsyncClient, n: int) -> list[int]:
    ids = []
    for i in range(n):
        response = await http.post("/users", json={"email": f"storm{i}@example.com", "name": f"Storm {i}"})
        ids.append(response.json()["id"])
    return ids


async def test_replay_storm_processes_each_event_once(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """1,000 deliveries of 100 events, duplicated, shuffled, concurrent: 100 processed, one receipt each."""
    async with running_platform(database_url, redis_url, tmp_path, worker_copies=2) as platform:
        user_ids = await sign_up(platform.http, 25)
        bodies, expected, paid = storm_events(user_ids)
        deliveries = [b for b in bodies for _ in range(10)]
        random.Random(42).shuffle(deliveries)
        gate = asyncio.Semaphore(50)

        async def one(body: bytes) -> int:
            async with gate:
                return (await deliver(platform.http, body)).status_code

        statuses = await asyncio.gather(*(one(b) for b in deliveries))
        assert set(statuses) == {200}

        def receipts() -> list[str]:
            return [str(m["Subject"]) for m in platform.mailbox.messages if "receipt" in str(m["Subject"])]

        async def all_processed() -> bool:
            return await db.webhooks.count_events(pool, processed=True) == 100 and len(receipts()) >= len(paid)

        await wait_for(all_processed, timeout_s=90, what="every event processed and every receipt sent")
        await asyncio.sleep(2)  # anything sent twice would arrive now
        await assert_storm_outcome(pool, platform, expected, paid, receipts())


async def assert_storm_outcome(
    pool: Pool, platform: Platform, expected: dict[int, str], paid: set[str], receipts: list[str]
) -> None:
    assert await db.webhooks.count_events(pool) == 100
    assert sorted(receipts) == sorted(f"Your receipt for invoice {i}" for i in paid)
    async with pool.acquire() as conn:
        states = {u: (await db.billing.get_subscription(conn, u)) for u in expected}
    assert {u: s.status for u, s in states.items()} == expected
    assert all(s.features_enabled == (s.status == "active") for s in states.values())
    for message in platform.mailbox.messages:
        if "receipt" in str(message["Subject"]):
            (pdf,) = list(message.iter_attachments())
            assert pdf.get_content_type() == "application/pdf"
            assert pdf.get_content()[:5] == b"%PDF-"
