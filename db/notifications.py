"""In-app notifications, and each user's channel preferences."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from millrace import Executor, NotFound


@dataclass(frozen=True, slots=True, kw_only=True)
class Preferences:
    user_id: int
    in_app: bool
    slack: bool
    sms: bool
    slack_webhook_url: str | None
    phone: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    id: int
    event_key: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


async def get_preferences(conn: Executor, user_id: int) -> Preferences:
    row = await conn.fetchrow(
        """SELECT id AS user_id, notify_in_app AS in_app, notify_slack AS slack, notify_sms AS sms,
                  slack_webhook_url, phone FROM users WHERE id = $1""",
        user_id,
    )
    if row is None:
        raise NotFound("user", user_id)
    return Preferences(**dict(row))


async def set_preferences(conn: Executor, preferences: Preferences) -> None:
    updated = await conn.execute(
        """UPDATE users SET notify_in_app = $2, notify_slack = $3, notify_sms = $4, slack_webhook_url = $5, phone = $6
           WHERE id = $1""",
        preferences.user_id,
        preferences.in_app,
        preferences.slack,
        preferences.sms,
        preferences.slack_webhook_url,
        preferences.phone,
    )
    if updated == "UPDATE 0":
        raise NotFound("user", preferences.user_id)


async def insert_notification(conn: Executor, *, user_id: int, event_key: str, title: str, body: str) -> bool:
    """False when this event already notified this user: a second run adds nothing; NotFound without the user."""
    try:
        inserted = await conn.fetchval(
            """INSERT INTO notifications (user_id, event_key, title, body) VALUES ($1, $2, $3, $4)
               ON CONFLICT DO NOTHING RETURNING true""",
            user_id,
            event_key,
            title,
            body,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("user", user_id) from None
    return bool(inserted)


async def list_notifications(conn: Executor, user_id: int, *, limit: int = 50) -> list[Notification]:
    rows = await conn.fetch(
        """SELECT id, event_key, title, body, created_at, read_at FROM notifications
           WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2""",
        user_id,
        limit,
    )
    return [Notification(**dict(r)) for r in rows]
