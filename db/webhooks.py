"""The webhook inbox: each provider event stored once, processed once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from millrace import Executor


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    provider: str
    event_id: str
    event_type: str
    occurred_at: datetime
    payload: dict[str, Any]
    processed_at: datetime | None


async def insert_event(
    conn: Executor, *, provider: str, event_id: str, event_type: str, occurred_at: datetime, payload: dict[str, Any]
) -> bool:
    """Store the event; False when it was delivered before (the caller acknowledges and does nothing)."""
    inserted = await conn.fetchval(
        """INSERT INTO webhook_events (provider, event_id, event_type, occurred_at, payload)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
        provider,
        event_id,
        event_type,
        occurred_at,
        payload,
    )
    return bool(inserted)


async def lock_unprocessed(conn: Executor, provider: str, event_id: str) -> WebhookEvent | None:
    """Inside a transaction: the event, locked, if it still awaits processing; None if it was processed."""
    row = await conn.fetchrow(
        """SELECT provider, event_id, event_type, occurred_at, payload, processed_at FROM webhook_events
           WHERE provider = $1 AND event_id = $2 AND processed_at IS NULL FOR UPDATE""",
        provider,
        event_id,
    )
    return None if row is None else WebhookEvent(**dict(row))


async def mark_processed(conn: Executor, provider: str, event_id: str) -> None:
    await conn.execute(
        "UPDATE webhook_events SET processed_at = now() WHERE provider = $1 AND event_id = $2", provider, event_id
    )


async def count_events(conn: Executor, *, processed: bool | None = None) -> int:
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM webhook_events
               WHERE $1::boolean IS NULL OR (processed_at IS NOT NULL) = $1""",
            processed,
        )
    )
