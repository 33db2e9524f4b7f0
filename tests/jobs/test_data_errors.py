"""Errors that come from the data end a job at once, with the reason; they never burn a retry budget."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import db.billing
import db.users
import db.webhooks
import queues
from millrace import JobArgs, JobClient, JobRef, Pool, store
from producers import notifications
from producers.emails import SEND_WELCOME_EMAIL, enqueue_receipt_email, enqueue_welcome_email
from producers.integrations import enqueue_crm_sync
from producers.payments import enqueue_webhook_processing
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.smtp import smtp_server

NOW = dt.datetime.now(dt.UTC)


async def store_event(client: JobClient, pool: Pool, event_id: str, event_type: str, obj: Any) -> str:
    return await store_payload(client, pool, event_id, event_type, {"id": event_id, "data": {"object": obj}})


async def store_payload(client: JobClient, pool: Pool, event_id: str, event_type: str, payload: Any) -> str:
    async with pool.acquire() as conn, conn.transaction():
        await db.webhooks.insert_event(
            conn, provider="stripe", event_id=event_id, event_type=event_type, occurred_at=NOW, payload=payload
        )
        enqueued = await enqueue_webhook_processing(client, provider="stripe", event_id=event_id, conn=conn)
    return enqueued.id


async def dead_after_one_attempt(pool: Pool, job_id: str) -> str:
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.attempts) == ("dead", 1), job
    return f"{job.last_error_type}: {job.last_error}"


INVOICE = {"id": "in_1", "amount_due": 1900, "currency": "eur", "created": int(NOW.timestamp())}


@pytest.mark.parametrize(
    ("event_type", "obj", "reason"),
    [
        ("checkout.session.completed", {"metadata": {"user_id": "424242"}}, "NotFound: user 424242 not found"),
        ("invoice.paid", {**INVOICE, "metadata": {"user_id": "424242"}}, "NotFound: user 424242 not found"),
        ("invoice.paid", {**INVOICE, "amount_due": 10**30, "metadata": {"user_id": "1"}}, "amount_due"),
        ("invoice.paid", {**INVOICE, "amount_due": -5, "metadata": {"user_id": "1"}}, "amount_due"),
        ("invoice.paid", {**INVOICE, "created": 10**20, "metadata": {"user_id": "1"}}, "created"),
        ("checkout.session.completed", {"metadata": {"user_id": str(2**70)}}, "user_id"),
        ("checkout.session.completed", {"metadata": {}}, "user_id"),
        ("checkout.session.completed", {"metadata": {"user_id": True}}, "user_id"),  # not user 1
        ("invoice.paid", {**INVOICE, "amount_due": 1e30, "metadata": {"user_id": "1"}}, "amount_due"),
        ("invoice.paid", {**INVOICE, "id": "in_1\r\nX-Spam: yes", "metadata": {"user_id": "1"}}, "id"),
        ("invoice.payment_failed", {**INVOICE, "currency": "euro", "metadata": {"user_id": "1"}}, "currency"),
        ("customer.subscription.deleted", {"metadata": {"user_id": "424242"}}, "NotFound"),
        ("checkout.session.completed", "not an object", "dictionary"),
    ],
)
async def test_payment_events_the_data_cannot_satisfy_are_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, event_type: str, obj: dict[str, Any], reason: str
) -> None:
    await db.users.insert_user(pool, email="ada@example.com", name="Ada")
    job_id = await store_event(client, pool, "evt_1", event_type, obj)
    await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.WEBHOOKS)
    assert reason in await dead_after_one_attempt(pool, job_id)


@pytest.mark.parametrize("payload", [{"id": "evt_1", "data": "not an object"}, {"id": "evt_1"}])
async def test_a_payment_event_of_another_shape_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, payload: dict[str, Any]
) -> None:
    job_id = await store_payload(client, pool, "evt_1", "invoice.paid", payload)
    await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.WEBHOOKS)
    assert "ValidationError" in await dead_after_one_attempt(pool, job_id)


@pytest.mark.parametrize(
    "ref",
    [notifications.NOTIFY_USER, notifications.DELIVER_IN_APP, notifications.DELIVER_SLACK, notifications.DELIVER_SMS],
    ids=lambda ref: ref.name,
)
async def test_a_notification_for_a_missing_user_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, ref: JobRef[notifications.NotificationArgs]
) -> None:
    """Each channel's job too: the user may be gone between the fan-out and the delivery."""
    args = notifications.NotificationArgs(user_id=999, event_key="task:1", title="t", body="b")
    enqueued = await client.enqueue(ref, args)
    # an SMS provider that is never reached: the missing user is found out first
    settings = Settings(
        database_url=database_url, redis_url=redis_url, sms_api_url="http://127.0.0.1:9/sms", sms_api_token="t"
    )
    await run_app_workers(settings, queues.NOTIFICATIONS)
    assert "NotFound: user 999 not found" in await dead_after_one_attempt(pool, enqueued.id)


async def test_a_crm_sync_for_a_missing_user_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    enqueued = await enqueue_crm_sync(client, user_id=999)
    settings = Settings(
        database_url=database_url, redis_url=redis_url, crm_api_url="http://127.0.0.1:9/crm", crm_api_token="t"
    )
    await run_app_workers(settings, queues.INTEGRATIONS)
    assert "NotFound: user 999 not found" in await dead_after_one_attempt(pool, enqueued.id)


class UncheckedUserArgs(JobArgs):
    """What a producer of an older release could enqueue: any integer."""

    user_id: int


async def test_a_user_id_past_bigint_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Refused by the worker as invalid arguments, not retried as a database error on every attempt."""
    unchecked = JobRef(SEND_WELCOME_EMAIL.name, queues.EMAILS, UncheckedUserArgs)
    enqueued = await client.enqueue(unchecked, UncheckedUserArgs(user_id=2**63))
    settings = Settings(database_url=database_url, redis_url=redis_url, eml_dir=tmp_path / "mail")
    await run_app_workers(settings, queues.EMAILS)
    assert "user_id: Input should be less than or equal to 9223372036854775807" in await dead_after_one_attempt(
        pool, enqueued.id
    )


async def test_an_address_with_a_line_break_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    user = await db.users.insert_user(pool, email="eve@example.com\r\nBcc: spy@example.com", name="Eve")
    enqueued = await enqueue_welcome_email(client, user_id=user.id)
    settings = Settings(database_url=database_url, redis_url=redis_url, eml_dir=tmp_path / "mail")
    await run_app_workers(settings, queues.EMAILS)
    assert "GiveUp: cannot build this email" in await dead_after_one_attempt(pool, enqueued.id)
    assert not (tmp_path / "mail").exists()


async def test_a_receipt_whose_invoice_id_cannot_name_a_file_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """An invoice stored before webhook ids were checked: its id names the PDF in a MIME header."""
    user = await db.users.insert_user(pool, email="eve@example.com", name="Eve")
    await db.billing.record_invoice(
        pool, invoice_id="in_1\r\nX", user_id=user.id, amount_cents=1900, currency="eur", created_at=NOW, paid_at=NOW
    )
    enqueued = await enqueue_receipt_email(client, invoice_id="in_1\r\nX")
    settings = Settings(database_url=database_url, redis_url=redis_url, eml_dir=tmp_path / "mail")
    await run_app_workers(settings, queues.EMAILS)
    assert "GiveUp: cannot build this email" in await dead_after_one_attempt(pool, enqueued.id)


async def test_a_name_with_a_line_break_cannot_add_a_header(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    user = await db.users.insert_user(pool, email="eve@example.com", name="Eve\r\nBcc: spy@example.com")
    with smtp_server() as (mailbox, port):
        settings = Settings(database_url=database_url, redis_url=redis_url, email_backend="smtp", smtp_port=port)
        enqueued = await enqueue_welcome_email(client, user_id=user.id)
        await run_app_workers(settings, queues.EMAILS)
    assert (await store.jobs.get_job(pool, enqueued.id)).status == "succeeded"
    [message] = mailbox.to("eve@example.com")
    assert message["Subject"] == "Welcome to Millrace, Eve Bcc: spy@example.com"
    assert message["Bcc"] is None
    assert len(mailbox.messages) == 1
