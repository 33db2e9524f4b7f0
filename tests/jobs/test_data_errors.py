"""Errors that come from the data end a job at once, with the reason; they never burn a retry budget."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

import db.users
import db.webhooks
import queues
from millrace import JobClient, Pool, store
from producers.emails import enqueue_welcome_email
from producers.notifications import enqueue_notification
from producers.payments import enqueue_webhook_processing
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.smtp import smtp_server

NOW = dt.datetime.now(dt.UTC)


async def store_event(client: JobClient, pool: Pool, event_id: str, event_type: str, obj: dict[str, Any]) -> str:
    async with pool.acquire() as conn, conn.transaction():
        await db.webhooks.insert_event(
            conn,
            provider="stripe",
            event_id=event_id,
            event_type=event_type,
            occurred_at=NOW,
            payload={"id": event_id, "type": event_type, "data": {"object": obj}},
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
    ],
)
async def test_payment_events_the_data_cannot_satisfy_are_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, event_type: str, obj: dict[str, Any], reason: str
) -> None:
    await db.users.insert_user(pool, email="ada@example.com", name="Ada")
    job_id = await store_event(client, pool, "evt_1", event_type, obj)
    await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.WEBHOOKS)
    assert reason in await dead_after_one_attempt(pool, job_id)


async def test_a_notification_for_a_missing_user_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    enqueued = await enqueue_notification(client, user_id=999, event_key="task:1", title="t", body="b")
    await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.NOTIFICATIONS)
    assert "NotFound" in await dead_after_one_attempt(pool, enqueued.id)


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
