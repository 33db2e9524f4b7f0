"""The webhook endpoint under load: signed deliveries at a fixed concurrency against the real web process.

Each request verifies the signature, stores the event and enqueues its processing in one transaction.
The load generator (httpx, same machine) shares the two cores with the server, PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from scripts.demo_load import wait_until_up
from tests.servers import free_port
from web.signatures import sign

SECRET = "whsec_bench"
#: one client at a time shows the cost of a request; twenty show one web process saturated
CONCURRENCIES = (1, 20)
REQUESTS = int(os.environ.get("BENCH_WEBHOOKS", "2000"))
ROOT = Path(__file__).resolve().parent.parent


def body(n: int) -> bytes:
    obj = {
        "id": f"in_{n}",
        "amount_due": 1900,
        "currency": "eur",
        "created": int(time.time()),
        "metadata": {"user_id": "1"},
    }
    event = {"id": f"evt_bench_{n}", "type": "invoice.paid", "created": int(time.time()), "data": {"object": obj}}
    return json.dumps(event).encode()


async def fire(http: httpx.AsyncClient, concurrency: int, first: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(first, first + REQUESTS))

    async def client_loop() -> None:
        for n in counter:
            payload = body(n)
            headers = {"Stripe-Signature": sign(payload, SECRET, int(time.time()))}
            started = time.perf_counter()
            response = await http.post("/webhooks/stripe", content=payload, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return latencies


async def bench_webhook_endpoint(redis_url: str, database_url: str) -> dict[int, dict[str, float]]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
        "WEBHOOK_SECRETS": json.dumps({"stripe": [SECRET]}),
        "LOG_LEVEL": "WARNING",
        # the demo app with its dashboard closed: production refuses to start without the operator's login
        "ENVIRONMENT": "development",
    }
    server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured part
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "web.app:app_from_environment",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    results: dict[int, dict[str, float]] = {}
    try:
        limits = httpx.Limits(max_connections=max(CONCURRENCIES))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as http:
            await wait_until_up(http, timeout_s=10)
            for round_number, concurrency in enumerate(CONCURRENCIES):
                started = time.perf_counter()
                latencies = sorted(await fire(http, concurrency, first=round_number * REQUESTS))
                elapsed = time.perf_counter() - started
                results[concurrency] = {
                    "requests_per_s": REQUESTS / elapsed,
                    "p50_ms": statistics.median(latencies),
                    "p99_ms": latencies[round(0.99 * (len(latencies) - 1))],
                }
    finally:
        server.terminate()
        server.wait(10)
    return results
