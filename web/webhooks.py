"""POST /webhooks/{provider}: verify, store once in the inbox, enqueue processing, answer 200."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import Header, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError

import db.webhooks
from millrace import unstorable_text
from producers.payments import enqueue_webhook_processing
from web.signatures import SignatureError, verify
from web.state import state_of

log = structlog.get_logger(__name__)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused past `limit` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


class EventEnvelope(BaseModel):
    """What every provider event carries; the rest of the payload is the job's to read."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=255)
    created: int = Field(strict=True, ge=0, le=4_102_444_800)  # a timestamp before 2100, not 1e20
    data: dict[str, Any]


class WebhookReceived(BaseModel):
    received: bool
    #: delivered before: acknowledged, not processed again
    duplicate: bool


#: the body is read raw (its exact bytes are signed), so FastAPI is told what it is only for the document
OPENAPI_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EventEnvelope.model_json_schema()}},
    }
}
#: optional here, so that a missing one gets the same 400 as a forged one
SignatureHeader = Annotated[str | None, Header(description='`t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`')]


def parse_event(body: bytes) -> tuple[str, str, datetime, dict[str, Any]]:
    """The event's id, type, time and payload; 400 for anything PostgreSQL or the job could not take."""
    try:
        event = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        envelope = EventEnvelope.model_validate(event)
    except (ValueError, RecursionError, ValidationError):  # ValidationError is a ValueError too
        raise HTTPException(400, "malformed event") from None
    if unstorable_text(event) is not None:  # NUL, lone surrogates, or nesting deeper than a payload needs
        raise HTTPException(400, "malformed event: text that cannot be stored")
    return envelope.id, envelope.type, datetime.fromtimestamp(envelope.created, tz=UTC), event


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as infinity, which no jsonb column takes
        raise ValueError("a number out of range")
    return number


async def receive_webhook(provider: str, request: Request, stripe_signature: SignatureHeader = None) -> WebhookReceived:
    state = state_of(request)
    settings = state.settings
    secrets = [s.get_secret_value() for s in settings.webhook_secrets.get(provider, [])]
    if not secrets:
        raise HTTPException(404, "unknown webhook provider")
    try:
        body = await read_body(request, settings.webhook_max_body_bytes)
    except BodyTooLarge:
        raise HTTPException(413, "webhook body too large") from None
    try:
        verify(
            stripe_signature,
            body,
            secrets,
            now=time.time(),
            tolerance_s=settings.webhook_tolerance_s,
        )
    except SignatureError as error:
        log.warning("webhook_refused", provider=provider, reason=str(error))
        raise HTTPException(400, "invalid signature") from None
    event_id, event_type, occurred_at, payload = parse_event(body)
    async with state.pool.acquire() as conn, conn.transaction():
        stored = await db.webhooks.insert_event(
            conn, provider=provider, event_id=event_id, event_type=event_type, occurred_at=occurred_at, payload=payload
        )
        if stored:
            await enqueue_webhook_processing(state.jobs, provider=provider, event_id=event_id, conn=conn)
    log.info("webhook_received", provider=provider, event_id=event_id, duplicate=not stored)
    return WebhookReceived(received=True, duplicate=not stored)
