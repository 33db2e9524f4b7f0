"""A small demo load for `make run`: drive each flow through the web app so a newcomer sees jobs flow."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import structlog

from settings import Settings
from web.signatures import sign

log = structlog.get_logger(__name__)


async def wait_until_up(client: httpx.AsyncClient, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the web app did not come up")
        await asyncio.sleep(0.5)


def payment_event(event_type: str, user_id: int, invoice_id: str | None = None) -> bytes:
    now = int(time.time())
    obj: dict[str, object] = {"metadata": {"user_id": str(user_id)}, "plan": "pro"}
    if invoice_id:
        obj |= {"id": invoice_id, "amount_due": 1900, "currency": "eur", "created": now}
    return json.dumps({"id": f"evt_{uuid.uuid4().hex[:12]}", "type": event_type, "created": now,
                       "data": {"object": obj}}).encode()  # fmt: skip


async def pay(client: httpx.AsyncClient, secret: str, user_id: int) -> None:
    """What the payment provider would send: a completed checkout, then a paid invoice."""
    invoice_id = f"in_demo_{uuid.uuid4().hex[:8]}"
    for body in (payment_event("checkout.session.completed", user_id),
                 payment_event("invoice.paid", user_id, invoice_id)):  # fmt: skip
        response = await client.post("/webhooks/stripe", content=body,
                                     headers={"Stripe-Signature": sign(body, secret, int(time.time()))})  # fmt: skip
        log.info("demo_webhook_sent", status=response.status_code, user_id=user_id)


async def one_user(client: httpx.AsyncClient, settings: Settings, n: int) -> None:
    email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/users", json={"email": email, "name": f"Demo {n}"})
    user_id = created.json()["id"]
    log.info("demo_user_signed_up", status=created.status_code, user_id=user_id)
    await client.post("/tasks", json={"title": f"Welcome task {n}", "assignee_id": user_id})
    if n % 3 == 0:
        await client.post("/password-resets", json={"email": email})
    secrets = settings.webhook_secrets.get("stripe")
    if secrets and n % 2 == 0:
        await pay(client, secrets[0].get_secret_value(), user_id)


async def run_demo_load(settings: Settings, *, count: int, interval_s: float) -> int:
    base_url = f"http://{settings.web_host}:{settings.web_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await wait_until_up(client)
        for n in range(count):
            await one_user(client, settings, n)
            await asyncio.sleep(interval_s)
    log.info("demo_load_finished", users=count, status_page=f"{base_url}/status/")
    return 0
