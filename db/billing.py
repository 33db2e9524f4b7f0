"""Subscriptions and invoices, as payment events leave them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from millrace import Executor, NotFound

SubscriptionStatus = Literal["trialing", "active", "past_due", "canceled", "expired"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    user_id: int
    status: SubscriptionStatus
    plan: str
    features_enabled: bool
    trial_ends_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    id: str
    user_id: int
    amount_cents: int
    currency: str
    status: Literal["open", "paid"]
    created_at: datetime
    paid_at: datetime | None


async def apply_subscription_state(
    conn: Executor,
    *,
    user_id: int,
    status: SubscriptionStatus,
    plan: str | None,
    features_enabled: bool,
    occurred_at: datetime,
    event_id: str,
) -> bool:
    """Move the subscription to `status` unless a newer event already moved it; True if this one applied.

    Events are ordered by (occurred_at, event_id), so any arrival order ends in the same state.
    """
    try:
        applied = await conn.fetchval(
            """INSERT INTO subscriptions AS s
                   (user_id, status, plan, features_enabled, state_changed_at, state_event_id)
           VALUES ($1, $2, coalesce($3, 'standard'), $4, $5, $6)
           ON CONFLICT (user_id) DO UPDATE SET
               status = EXCLUDED.status, plan = coalesce($3, s.plan), features_enabled = EXCLUDED.features_enabled,
               state_changed_at = EXCLUDED.state_changed_at, state_event_id = EXCLUDED.state_event_id,
               updated_at = now()
           WHERE (s.state_changed_at, s.state_event_id) < (EXCLUDED.state_changed_at, EXCLUDED.state_event_id)
           RETURNING true""",
            user_id,
            status,
            plan,
            features_enabled,
            occurred_at,
            event_id,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("user", user_id) from None
    return bool(applied)


async def start_trial(conn: Executor, *, user_id: int, trial_ends_at: datetime, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO subscriptions (user_id, status, plan, features_enabled, trial_ends_at,
                                      state_changed_at, state_event_id)
           VALUES ($1, 'trialing', 'trial', true, $2, $3, '') ON CONFLICT DO NOTHING""",
        user_id,
        trial_ends_at,
        now,
    )


async def get_subscription(conn: Executor, user_id: int) -> Subscription:
    row = await conn.fetchrow(
        "SELECT user_id, status, plan, features_enabled, trial_ends_at FROM subscriptions WHERE user_id = $1",
        user_id,
    )
    if row is None:
        raise NotFound("subscription", user_id)
    return Subscription(**dict(row))


async def record_invoice(
    conn: Executor,
    *,
    invoice_id: str,
    user_id: int,
    amount_cents: int,
    currency: str,
    created_at: datetime,
    paid_at: datetime | None,
) -> None:
    """Insert or update an invoice; once paid it stays paid, whatever arrives later."""
    try:
        await conn.execute(
            """INSERT INTO invoices AS i (id, user_id, amount_cents, currency, status, created_at, paid_at)
           VALUES ($1, $2, $3, $4, CASE WHEN $6::timestamptz IS NULL THEN 'open' ELSE 'paid' END, $5, $6)
           ON CONFLICT (id) DO UPDATE SET
               status = CASE WHEN i.status = 'paid' OR EXCLUDED.status = 'paid' THEN 'paid' ELSE 'open' END,
               paid_at = coalesce(i.paid_at, EXCLUDED.paid_at)""",
            invoice_id,
            user_id,
            amount_cents,
            currency,
            created_at,
            paid_at,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("user", user_id) from None


async def get_invoice(conn: Executor, invoice_id: str) -> Invoice:
    row = await conn.fetchrow(
        "SELECT id, user_id, amount_cents, currency, status, created_at, paid_at FROM invoices WHERE id = $1",
        invoice_id,
    )
    if row is None:
        raise NotFound("invoice", invoice_id)
    return Invoice(**dict(row))


async def list_active_user_ids(conn: Executor, *, after_id: int, limit: int, now: datetime) -> list[int]:
    """One keyset page of users with a live subscription or trial, in id order."""
    rows = await conn.fetch(
        """SELECT user_id FROM subscriptions
           WHERE user_id > $1 AND (status = 'active' OR (status = 'trialing' AND trial_ends_at > $3))
           ORDER BY user_id LIMIT $2""",
        after_id,
        limit,
        now,
    )
    return [r["user_id"] for r in rows]


async def expire_trials(conn: Executor, *, now: datetime, limit: int) -> list[int]:
    """Expire up to `limit` ended trials and return their users; an expired trial is never picked again."""
    rows = await conn.fetch(
        """UPDATE subscriptions SET status = 'expired', features_enabled = false, updated_at = now()
           WHERE user_id IN (
               SELECT user_id FROM subscriptions WHERE status = 'trialing' AND trial_ends_at <= $1
               ORDER BY user_id LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING user_id""",
        now,
        limit,
    )
    return sorted(r["user_id"] for r in rows)


_DUE_REMINDERS = {
    3: """UPDATE invoices SET reminded_3d_at = now() WHERE id IN (
              SELECT id FROM invoices WHERE status = 'open' AND reminded_3d_at IS NULL
                AND created_at <= $1::timestamptz - interval '3 days'
              ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING id""",
    7: """UPDATE invoices SET reminded_7d_at = now() WHERE id IN (
              SELECT id FROM invoices WHERE status = 'open' AND reminded_7d_at IS NULL
                AND created_at <= $1::timestamptz - interval '7 days'
              ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING id""",
}


async def claim_due_reminders(conn: Executor, *, days_open: Literal[3, 7], now: datetime, limit: int) -> list[str]:
    """Mark up to `limit` open invoices as reminded after `days_open` days and return them; each once."""
    rows = await conn.fetch(_DUE_REMINDERS[days_open], now, limit)
    return sorted(r["id"] for r in rows)
