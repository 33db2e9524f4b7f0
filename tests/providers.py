"""Third parties as a real HTTP server on loopback: an email API, a CRM, an SMS API, Slack webhooks.

The test switches faults per provider: an HTTP status (500, 503, 400...), a hang past the client's
timeout, or 429 with Retry-After. Every request that reached the server is kept, faults included.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import asgi_server, free_port

PROVIDERS = ("email", "crm", "sms", "slack")


@dataclass
class Fault:
    status: int = 200
    hang_s: float = 0.0
    retry_after: str | None = None


@dataclass
class Providers:
    port: int
    faults: dict[str, Fault] = field(default_factory=lambda: {p: Fault() for p in PROVIDERS})
    #: (provider, path, JSON body, answered status) for every request, in arrival order
    requests: list[tuple[str, str, Any, int]] = field(default_factory=list)
    crm_contacts: dict[str, Any] = field(default_factory=dict)
    #: (provider, time.monotonic()) of every request's arrival, for rate checks
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    #: (provider, time.time()) of every request that said when it was sent (the x-sent-at header)
    sent: list[tuple[str, float]] = field(default_factory=list)
    #: (provider, seconds from x-sent-at to arrival by time.time()): the jitter between a call and its arrival
    lags: list[tuple[str, float]] = field(default_factory=list)
    #: requests being answered now, and the most there ever were at once, by provider
    in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROVIDERS, 0))
    max_in_flight: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROVIDERS, 0))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/{provider}"

    def fail(self, provider: str, status: int, *, retry_after: str | None = None) -> None:
        self.faults[provider] = Fault(status=status, retry_after=retry_after)

    def hang(self, provider: str, seconds: float = 60) -> None:
        self.faults[provider] = Fault(hang_s=seconds)

    def recover(self, provider: str) -> None:
        self.faults[provider] = Fault()

    def delivered(self, provider: str) -> list[Any]:
        """Bodies of the requests a provider accepted."""
        with self._lock:
            return [body for p, _, body, status in self.requests if p == provider and status < 300]

    def attempts(self, provider: str) -> int:
        with self._lock:
            return sum(1 for p, *_ in self.requests if p == provider)

    async def handle(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        sent_at = _sent_at(request.headers.get("x-sent-at"))
        with self._lock:
            self.arrivals.append((provider, time.monotonic()))
            if sent_at is not None:
                self.sent.append((provider, sent_at))
                self.lags.append((provider, time.time() - sent_at))
            self.in_flight[provider] += 1
            self.max_in_flight[provider] = max(self.max_in_flight[provider], self.in_flight[provider])
        try:
            return await self._answer(provider, request)
        finally:
            with self._lock:
                self.in_flight[provider] -= 1

    async def _answer(self, provider: str, request: Request) -> Response:
        fault = self.faults[provider]
        body = await request.json() if await request.body() else None
        if fault.hang_s:
            await asyncio.sleep(fault.hang_s)
        with self._lock:
            self.requests.append((provider, request.url.path, body, fault.status))
        if fault.status >= 300:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return JSONResponse({"error": f"injected {fault.status}"}, fault.status, headers=headers)
        if provider == "crm" and request.method == "PUT":
            self.crm_contacts[request.path_params["rest"]] = body  # upsert by our user id: idempotent
        return JSONResponse({"ok": True})


def _sent_at(header: str | None) -> float | None:
    try:
        value = float(header) if header is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


@contextmanager
def provider_server() -> Iterator[Providers]:
    providers = Providers(port=free_port())
    app = Starlette(
        routes=[
            Route("/{provider}", providers.handle, methods=["POST", "PUT"]),
            Route("/{provider}/{rest:path}", providers.handle, methods=["POST", "PUT"]),
        ]
    )
    with asgi_server(app, providers.port):
        yield providers
