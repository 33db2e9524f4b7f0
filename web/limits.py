"""A cap on every request body, enforced before the application reads it: 413, not memory exhaustion."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Buffers a request's body up to its path's limit and answers 413 beyond it.

    The service's bodies are small JSON documents, so reading one whole before the app sees it costs
    nothing and spares every handler from checking. Uploads (`streamed` prefixes) are the exception: a
    declared length past their limit is refused here, and the handler counts the bytes as they stream
    to storage (millrace.storage's `max_bytes`), so a file never sits whole in memory.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        default_bytes: int,
        by_prefix: Mapping[str, int],
        streamed: Mapping[str, int] | None = None,
    ) -> None:
        self._app = app
        self._default = default_bytes
        self._by_prefix = dict(by_prefix)
        self._streamed = dict(streamed or {})

    def _limit(self, path: str) -> int:
        return next((n for prefix, n in self._by_prefix.items() if path.startswith(prefix)), self._default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        streamed = next((n for prefix, n in self._streamed.items() if scope["path"].startswith(prefix)), None)
        limit = streamed if streamed is not None else self._limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        if streamed is not None:
            await self._app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        await self._app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body, only a disconnect can come
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _too_large(send: Send, limit: int) -> None:
    body = b'{"detail":"request body larger than ' + str(limit).encode() + b' bytes"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
