"""Scheduled business jobs run twice for the same period by two workers: one email per user at the SMTP server."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import db.billing
import db.users
import queues
from millrace import Pool
from millrace.client import JobClient
from producers import schedules
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.smtp import smtp_server

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()


async def seed(pool: Pool) -> dict[str, int]:
    """20 paying users, 5 ended trials, 5 running trials; 10 open invoices (5 four days old, 5 eight) and 3 paid."""
    async with pool.acquire() as conn:
        users = [await db.users.insert_user(conn, email=f"s{i}@example.com", name=f"S {i}") for i in range(30)]
        for user in users[:20]:
            await db.billing.apply_subscription_state(
                conn, user_id=user.id, status="active", plan="pro", features_enabled=True, occurred_at=NOW, event_id="e"
            )
        for i, user in enumerate(users[20:]):
            ends = NOW - dt.timedelta(days=1) if i < 5 else NOW + dt.timedelta(days=5)
            await db.billing.start_trial(conn, user_id=user.id, trial_ends_at=ends, now=NOW - dt.timedelta(days=14))
        for i, user in enumerate(users[:13]):
            age = dt.timedelta(days=4 if i < 5 else 8 if i < 10 else 10)
            await db.billing.record_invoice(
                conn,
                invoice_id=f"in_{i}",
                user_id=user.id,
                amount_cents=900,
                currency="eur",
                created_at=NOW - age,
                paid_at=NOW - dt.timedelta(days=9) if i >= 10 else None,
            )
    return {"daily": 25, "weekly": 25, "trial": 5, "reminders": 10 + 5}


async def test_each_scheduled_job_twice_with_two_workers_sends_one_email_each(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    expected = await seed(pool)
    period = schedules.PeriodArgs(period_start=TODAY, batch_size=7)  # small batches: the walk takes several pages
    as_of = schedules.AsOfArgs(as_of=NOW, batch_size=7)
    for _ in range(2):
        await client.enqueue(schedules.SEND_DAILY_SUMMARIES, period)
        await client.enqueue(schedules.SEND_WEEKLY_SUMMARIES, period)
        await client.enqueue(schedules.EXPIRE_TRIALS, as_of)
        await client.enqueue(schedules.REMIND_UNPAID_INVOICES, as_of)
    with smtp_server() as (mailbox, port):
        settings = Settings(database_url=database_url, redis_url=redis_url, email_backend="smtp", smtp_port=port)
        await run_app_workers(settings, queues.MAINTENANCE, copies=2)
        await run_app_workers(settings, queues.EMAILS, copies=2)
        messages = list(mailbox.messages)
    sent = Counter((str(m["To"]), str(m["Subject"]), str(m.get_body(("plain",)))) for m in messages)
    assert set(sent.values()) == {1}, [k for k, n in sent.items() if n > 1]
    subjects = Counter(str(m["Subject"]).split(",")[0].split(" for ")[0] for m in messages)
    assert subjects["Your day on Millrace"] == expected["daily"]
    assert subjects["Your week on Millrace"] == expected["weekly"]
    assert subjects["Your Millrace trial has ended"] == expected["trial"]
    assert sum(n for s, n in subjects.items() if s.startswith("Reminder:")) == expected["reminders"]
    async with pool.acquire() as conn:
        statuses = Counter([(await db.billing.get_subscription(conn, u)).status for u in range(1, 31)])
    assert statuses == {"active": 20, "expired": 5, "trialing": 5}
