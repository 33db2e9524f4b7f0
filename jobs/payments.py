"""Payment events from the provider's webhooks: subscriptions, invoices, receipts, feature access.

Idempotent: each event is processed once (the inbox row is locked and marked in one transaction with
its effects). Order-tolerant: a subscription takes the state of its newest event by the provider's
timestamp, whatever the arrival order, and an invoice once paid stays paid. Follow-up emails are
enqueued in the same transaction, each with a job key and a sent-email guard of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, BeforeValidator, Field

import db.billing
import db.webhooks
from db.webhooks import WebhookEvent
from jobs.policies import retrying
from jobs.services import Services
from millrace import Connection, JobContext, exponential, job
from producers.emails import enqueue_admin_email, enqueue_receipt_email
from producers.fields import BIGINT_MAX
from producers.payments import PROCESS_WEBHOOK_EVENT, WebhookEventArgs

log = structlog.get_logger(__name__)

Handler = Callable[[Services, Connection, WebhookEvent, dict[str, Any]], Awaitable[None]]


@job(PROCESS_WEBHOOK_EVENT, retry=retrying(8, exponential(first_s=2, factor=3, cap_s=600)))
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


class EventData(BaseModel):
    obj: dict[str, Any] = Field(alias="object")


class EventPayload(BaseModel):
    """The envelope around the object; a payload of another shape is refused like a bad object."""

    data: EventData


def _object_of(event: WebhookEvent) -> dict[str, Any]:
    return EventPayload.model_validate(event.payload).data.obj


def _whole_number(value: object) -> object:
    # pydantic's int takes True as 1 and 1e30 as 10**30: neither is an id, an amount or a time the provider sent
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("must be an integer, or its digits in a string")


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


class Metadata(BaseModel):
    #: the provider keeps metadata values as strings: "42" reads as 42, anything else is refused
    user_id: Annotated[WholeNumber, Field(ge=1, le=BIGINT_MAX)]


class EventObject(BaseModel):
    """What every payment event's object must carry; a ValidationError gives the job up (DATA_ERRORS)."""

    metadata: Metadata
    plan: str | None = Field(default=None, min_length=1, max_length=100)


class InvoiceObject(EventObject):
    #: printable ASCII, no spaces: it names the receipt's PDF in an email header and keys the sent-email guard
    id: str = Field(pattern=r"^[\x21-\x7e]{1,255}$")
    amount_due: WholeNumber = Field(ge=0, le=10**12)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    created: WholeNumber = Field(ge=0, le=4_102_444_800)  # no later than 2100: a timestamp, not a typo


def _user_id(obj: dict[str, Any]) -> int:
    return EventObject.model_validate(obj).metadata.user_id


async def _set_state(
    conn: Connection, event: WebhookEvent, obj: dict[str, Any], status: db.billing.SubscriptionStatus, features: bool
) -> bool:
    return await db.billing.apply_subscription_state(
        conn,
        user_id=_user_id(obj),
        status=status,
        plan=EventObject.model_validate(obj).plan,
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
    await enqueue_receipt_email(services.jobs, invoice_id=InvoiceObject.model_validate(obj).id, conn=conn)


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
    invoice = InvoiceObject.model_validate(obj)
    await db.billing.record_invoice(
        conn,
        invoice_id=invoice.id,
        user_id=invoice.metadata.user_id,
        amount_cents=invoice.amount_due,
        currency=invoice.currency.lower(),
        created_at=datetime.fromtimestamp(invoice.created, tz=UTC),
        paid_at=paid_at,
    )


HANDLERS: dict[str, Handler] = {
    "checkout.session.completed": on_checkout_completed,
    "invoice.paid": on_invoice_paid,
    "invoice.payment_failed": on_payment_failed,
    "customer.subscription.deleted": on_subscription_deleted,
}
