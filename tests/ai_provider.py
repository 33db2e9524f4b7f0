"""An OpenAI-compatible chat-completions server on loopback that the tests drive.

What it answers depends on markers in the document's text (the user message), so concurrent jobs get
deterministic behaviour: `MALFORMED_ONCE` (text that is not JSON, once), `INVALID_ALWAYS` (JSON that
fails validation, every time), `THROTTLE_ONCE` (429 with Retry-After: 1, once), `FAIL_ONCE` (500,
once). It counts requests in flight and keeps every request's arrival time and messages.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import asgi_server, free_port

VALID = {
    "title": "Quarterly report",
    "document_type": "report",
    "language": "en",
    "summary": "Sales grew.",
    "key_points": ["sales grew", "costs fell"],
}


@dataclass
class AiProvider:
    port: int
    latency_s: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    requests: list[list[dict[str, str]]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        messages: list[dict[str, str]] = body["messages"]
        with self._lock:
            self.arrivals.append(time.monotonic())
            self.requests.append(messages)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
            return self._answer(messages[1]["content"])
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, text: str) -> Response:
        for marker, once in (("MALFORMED_ONCE", True), ("THROTTLE_ONCE", True), ("FAIL_ONCE", True)):
            if marker in text:
                with self._lock:
                    self.seen[marker + text] += 1
                    first = self.seen[marker + text] == 1
                if first and once:
                    if marker == "THROTTLE_ONCE":
                        return JSONResponse({"error": "slow down"}, 429, headers={"Retry-After": "1"})
                    if marker == "FAIL_ONCE":
                        return JSONResponse({"error": "boom"}, 500)
                    return _chat("Sure! Here is the summary: {title: oops")
        if "INVALID_ALWAYS" in text:
            return _chat(json.dumps({**VALID, "language": "english", "key_points": "not a list"}))
        return _chat(json.dumps(VALID))


def _chat(content: str) -> JSONResponse:
    usage: dict[str, Any] = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    return JSONResponse({"choices": [{"message": {"role": "assistant", "content": content}}], "usage": usage})


@contextmanager
def ai_provider(latency_s: float = 0.0) -> Iterator[AiProvider]:
    provider = AiProvider(port=free_port(), latency_s=latency_s)
    app = Starlette(routes=[Route("/v1/chat/completions", provider.complete, methods=["POST"])])
    with asgi_server(app, provider.port):
        yield provider
