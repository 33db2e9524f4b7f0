"""Payment events from the provider's webhooks: subscriptions, invoices, receipts, feature access.

Idempotent: each event is processed once (the inbox row is locked and marked in one transaction with
its effects). Order-tolerant: a subscription takes the state of its newest event by the provider's
timestamp, whatever the arrival order, and an invoice once paid stays paid. Follow-up emails are
enqueued in the same transaction, each with a job key and a sent-email guard of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

import db.billing
import db.webhooks
from db.webhooks import WebhookEvent
from jobs.services import Services
from millrace import Connection, GiveUp, JobContext, RetryPolicy, exponential, job
from producers.emails import enqueue_admin_email, enqueue_receipt_email
from producers.payments import PROCESS_WEBHOOK_EVENT, WebhookEventArgs

log = structlog.get_logger(__name__)

Handler = Callable[[Services, Connection, WebhookEvent, dict[str, Any]], Awaitable[None]]


@job(PROCESS_WEBHOOK_EVENT, retry=RetryPolicy(attempts=8, backoff=exponential(first_s=2, factor=3, cap_s=600)))
async def process_webhook_event(ctx: JobContext[Services], args: WebhookEventArgs) -> None:
    async with ctx.services.db.acquire() as conn, conn.transaction():
        event = await db.webhooks.lock_unprocessed(conn, args.provider, args.event_id)
        if event is None:
            log.info("webhook_event_already_processed", event_id=args.event_id)
            return
        handler = HANDLERS.get(event.event_type)
        if handler is None:
            log.info("webhook_event_ignored", event_type=event.event_type)
        else:
            await handler(ctx.services, conn, event, _object_of(event))
        await db.webhooks.mark_processed(conn, args.provider, args.event_id)
    log.info("webhook_event_processed", event_type=event.event_type, event_id=event.event_id)


def _object_of(event: WebhookEvent) -> dict[str, Any]:
    obj = event.payload.get("data", {}).get("object")
    if not isinstance(obj, dict):
        raise GiveUp(f"event {event.event_id} has no data.object")
    return obj


def _user_id(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"]["user_id"])
    except (KeyError, TypeError, ValueError):
        raise GiveUp("event object carries no metadata.user_id") from None


async def _set_state(
    conn: Connection, event: WebhookEvent, obj: dict[str, Any], status: db.billing.SubscriptionStatus, features: bool
) -> bool:
    return await db.billing.apply_subscription_state(
        conn,
        user_id=_user_id(obj),
        status=status,
        plan=obj.get("plan"),
        features_enabled=features,
        occurred_at=event.occurred_at,
        event_id=event.event_id,
    )


async def on_checkout_completed(services: Services, conn: Connection, event: WebhookEvent, obj: dict[str, Any]) -> None:
    await _set_state(conn, event, obj, "active", True)
    await enqueue_admin_email(
        services.jobs, kind="subscription_started", user_id=_user_id(obj), event_key=event.event_id, conn=conn
    )


async def on_invoice_paid(services: Services, conn: Connection, event: WebhookEvent, obj: dict[str, Any]) -> None:
    await _record_invoice(conn, obj, paid_at=event.occurred_at)
    await _set_state(conn, event, obj, "active", True)
    await enqueue_receipt_email(services.jobs, invoice_id=str(obj["id"]), conn=conn)


async def on_payment_failed(services: Services, conn: Connection, event: WebhookEvent, obj: dict[str, Any]) -> None:
    await _record_invoice(conn, obj, paid_at=None)
    await _set_state(conn, event, obj, "past_due", False)
    await enqueue_admin_email(
        services.jobs, kind="payment_failed", user_id=_user_id(obj), event_key=event.event_id, conn=conn
    )


async def on_subscription_deleted(
    services: Services, conn: Connection, event: WebhookEvent, obj: dict[str, Any]
) -> None:
    await _set_state(conn, event, obj, "canceled", False)
    await enqueue_admin_email(
        services.jobs, kind="subscription_canceled", user_id=_user_id(obj), event_key=event.event_id, conn=conn
    )


async def _record_invoice(conn: Connection, obj: dict[str, Any], *, paid_at: datetime | None) -> None:
    try:
        created_at = datetime.fromtimestamp(int(obj["created"]), tz=UTC)
        await db.billing.record_invoice(
            conn,
            invoice_id=str(obj["id"]),
            user_id=_user_id(obj),
            amount_cents=int(obj["amount_due"]),
            currency=str(obj["currency"]),
            created_at=created_at,
            paid_at=paid_at,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise GiveUp(f"invoice object is malformed: {error!r}") from None


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": on_checkout_completed,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_payment_failed,
    "customer.subscription.deleted": on_subscription_deleted,
}
