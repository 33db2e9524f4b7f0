"""A small demo load for `make run`: drive each flow through the web app so a newcomer sees jobs flow.

A client of the service, as a browser or a payment provider would be: it speaks HTTP and imports
nothing of the web app. `python -m scripts.demo_load --count 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
import uuid

import httpx
import structlog

from millrace import configure_logging
from settings import Settings

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


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header, as the payment provider computes it."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def payment_event(event_type: str, user_id: int, invoice_id: str | None = None) -> bytes:
    now = int(time.time())
    obj: dict[str, object] = {"metadata": {"user_id": str(user_id)}, "plan": "pro"}
    if invoice_id:
        obj |= {"id": invoice_id, "amount_due": 1900, "currency": "eur", "created": now}
    return json.dumps(
        {"id": f"evt_{uuid.uuid4().hex[:12]}", "type": event_type, "created": now, "data": {"object": obj}}
    ).encode()


async def pay(client: httpx.AsyncClient, secret: str, user_id: int) -> None:
    """What the payment provider would send: a completed checkout, then a paid invoice."""
    invoice_id = f"in_demo_{uuid.uuid4().hex[:8]}"
    for body in (
        payment_event("checkout.session.completed", user_id),
        payment_event("invoice.paid", user_id, invoice_id),
    ):
        response = await client.post(
            "/webhooks/stripe", content=body, headers={"Stripe-Signature": sign(body, secret, int(time.time()))}
        )
        log.info("demo_webhook_sent", status=response.status_code, user_id=user_id)


async def one_user(client: httpx.AsyncClient, settings: Settings, n: int, *, heavy_every: int | None = None) -> None:
    """A user's flows; every `heavy_every`-th user also imports, exports and sends a quotation."""
    email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
    created = await client.post("/users", json={"email": email, "name": f"Demo {n}"})
    user_id = created.json()["id"]
    token = {"Authorization": f"Bearer {created.json()['api_token']}"}
    log.info("demo_user_signed_up", status=created.status_code, user_id=user_id)
    await client.post("/tasks", json={"title": f"Welcome task {n}", "assignee_id": user_id}, headers=token)
    if n % 3 == 0:
        await client.post("/password-resets", json={"email": email})
    secrets = settings.webhook_secrets.get("stripe")
    if secrets and n % 2 == 0:
        await pay(client, secrets[0].get_secret_value(), user_id)
    if heavy_every is not None and n % heavy_every == 0:
        await heavy_flows(client, token, n)


async def _until_settled(client: httpx.AsyncClient, token: dict[str, str], status_url: str | None) -> None:
    """Wait (a while at most) for the import to end, so that the export has its contacts to show."""
    for _ in range(60):
        if status_url is None or (await client.get(status_url, headers=token)).json()["status"] in (
            "completed",
            "failed",
        ):
            return
        await asyncio.sleep(0.5)


#: the demo's every fifth user also imports contacts, exports them and sends a quotation
HEAVY_EVERY = 5


def contacts_csv(rows: int) -> bytes:
    """A contacts file with a few rows the import will reject (a bad address, a missing field)."""
    lines = ["email,name,company"]
    for i in range(rows):
        if i % 50 == 7:
            lines.append(f"not-an-address-{i},Broken {i},ACME")
        elif i % 50 == 21:
            lines.append(f"short-{i}@example.com")
        else:
            lines.append(f"contact-{i}@example.com,Contact {i},{'ACME' if i % 2 else 'Initech'}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def heavy_flows(client: httpx.AsyncClient, token: dict[str, str], n: int) -> None:
    """What times out inside a request and belongs in the background: an import, an export, a quotation."""
    imported = await client.post(
        "/imports", params={"filename": f"contacts-{n}.csv"}, content=contacts_csv(2_000), headers=token
    )
    await _until_settled(client, token, imported.json().get("status_url") if imported.status_code == 202 else None)
    exported = await client.post("/reports", json={"report_type": "contacts"}, headers=token)
    quotation = {
        "customer_name": f"Customer {n} & Sons",
        "customer_email": f"customer-{n}@example.com",
        "tax_rate": "20",
        "lines": [
            {"description": "Consulting, day rate", "quantity": 3, "unit_price_cents": 90_000},
            {"description": "Travel", "quantity": 1, "unit_price_cents": 12_500},
        ],
    }
    quoted = await client.post("/quotations", json=quotation, headers=token)
    log.info(
        "demo_heavy_flows_started",
        imported=imported.status_code,
        exported=exported.status_code,
        quoted=quoted.status_code,
    )


async def run_demo_load(settings: Settings, *, count: int, interval_s: float) -> int:
    base_url = f"http://{settings.web_host}:{settings.web_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await wait_until_up(client)
        for n in range(count):
            await one_user(client, settings, n, heavy_every=HEAVY_EVERY)
            await asyncio.sleep(interval_s)
    log.info("demo_load_finished", users=count, status_page=f"{base_url}/status/")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    return asyncio.run(run_demo_load(settings, count=args.count, interval_s=args.interval))


if __name__ == "__main__":
    raise SystemExit(main())
