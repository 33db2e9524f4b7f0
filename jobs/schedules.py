"""Scheduled business jobs: summaries, trial expiry, unpaid-invoice reminders.

Each walks its users or invoices in batches, one short transaction a batch, and enqueues the emails of
a batch in one statement inside it. Each is idempotent per user and period: rows already handled are
not picked again (trials expired, invoices marked reminded), pending emails share a job key, and the
sent-email guard holds even when a second run comes after the first one's emails went out.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import structlog

import db.billing
from jobs.services import Services
from millrace.context import JobContext
from millrace.declare import CronSchedule, JobRef, cron, job
from millrace.retry import RetryPolicy, fixed
from producers import emails as email_intents
from producers import schedules as intents
from producers.emails import SummaryEmailArgs
from queues import MAINTENANCE

log = structlog.get_logger(__name__)

SCHEDULE_RETRY = RetryPolicy(attempts=3, backoff=fixed(60, jitter=0.2))
DEFAULT_BATCH = 1000


@job(intents.SEND_DAILY_SUMMARIES, retry=SCHEDULE_RETRY, timeout_s=600)
async def send_daily_summaries(ctx: JobContext[Services], args: intents.PeriodArgs) -> None:
    await fan_out_summaries(ctx.services, email_intents.SEND_DAILY_SUMMARY_EMAIL, "daily", args.period_start,
                            args.batch_size)  # fmt: skip


@job(intents.SEND_WEEKLY_SUMMARIES, retry=SCHEDULE_RETRY, timeout_s=600)
async def send_weekly_summaries(ctx: JobContext[Services], args: intents.PeriodArgs) -> None:
    await fan_out_summaries(ctx.services, email_intents.SEND_WEEKLY_SUMMARY_EMAIL, "weekly", args.period_start,
                            args.batch_size)  # fmt: skip


@job(intents.EXPIRE_TRIALS, retry=SCHEDULE_RETRY, timeout_s=600)
async def expire_trials(ctx: JobContext[Services], args: intents.AsOfArgs) -> None:
    await expire_ended_trials(ctx.services, args.as_of, args.batch_size)


@job(intents.REMIND_UNPAID_INVOICES, retry=SCHEDULE_RETRY, timeout_s=600)
async def remind_unpaid_invoices(ctx: JobContext[Services], args: intents.AsOfArgs) -> None:
    await send_due_reminders(ctx.services, args.as_of, args.batch_size)


@cron(queue=MAINTENANCE, schedule=CronSchedule(hour=8, minute=0), missed="run_once", retry=SCHEDULE_RETRY)
async def daily_summaries_at_eight(ctx: JobContext[Services]) -> None:
    await fan_out_summaries(ctx.services, email_intents.SEND_DAILY_SUMMARY_EMAIL, "daily", _tick(ctx).date(),
                            DEFAULT_BATCH)  # fmt: skip


@cron(queue=MAINTENANCE, schedule=CronSchedule(weekday=0, hour=8, minute=0), missed="run_once",
      retry=SCHEDULE_RETRY)  # fmt: skip
async def weekly_summaries_on_monday(ctx: JobContext[Services]) -> None:
    await fan_out_summaries(ctx.services, email_intents.SEND_WEEKLY_SUMMARY_EMAIL, "weekly", _tick(ctx).date(),
                            DEFAULT_BATCH)  # fmt: skip


@cron(queue=MAINTENANCE, schedule=CronSchedule(minute=5), missed="run_once", retry=SCHEDULE_RETRY)
async def hourly_trial_expiry(ctx: JobContext[Services]) -> None:
    await expire_ended_trials(ctx.services, _tick(ctx), DEFAULT_BATCH)


@cron(queue=MAINTENANCE, schedule=CronSchedule(hour=9, minute=0), missed="run_once", retry=SCHEDULE_RETRY)
async def daily_invoice_reminders(ctx: JobContext[Services]) -> None:
    await send_due_reminders(ctx.services, _tick(ctx), DEFAULT_BATCH)


def _tick(ctx: JobContext[Services]) -> dt.datetime:
    assert ctx.tick_at is not None, "cron functions always run for a tick"
    return ctx.tick_at


async def fan_out_summaries(
    services: Services, ref: JobRef[SummaryEmailArgs], kind: str, period_start: dt.date, batch_size: int
) -> None:
    after_id, total = 0, 0
    as_of = dt.datetime.combine(period_start, dt.time(), tzinfo=dt.UTC)
    while True:
        async with services.db.acquire() as conn, conn.transaction():
            user_ids = await db.billing.list_active_user_ids(conn, after_id=after_id, limit=batch_size, now=as_of)
            if not user_ids:
                break
            total += await services.jobs.enqueue_many(
                ref,
                [{"user_id": u, "period_start": period_start} for u in user_ids],
                conn=conn,
                job_keys=[f"{kind}-summary:{u}:{period_start}" for u in user_ids],
            )
        after_id = user_ids[-1]
    log.info("summaries_enqueued", kind=kind, period_start=period_start.isoformat(), emails=total)


async def expire_ended_trials(services: Services, as_of: dt.datetime, batch_size: int) -> None:
    total = 0
    while True:
        async with services.db.acquire() as conn, conn.transaction():
            user_ids = await db.billing.expire_trials(conn, now=as_of, limit=batch_size)
            if not user_ids:
                break
            total += await services.jobs.enqueue_many(
                email_intents.SEND_TRIAL_EXPIRED_EMAIL, [{"user_id": u} for u in user_ids], conn=conn,
                job_keys=[f"trial-expired:{u}" for u in user_ids],
            )  # fmt: skip
    log.info("trials_expired", emails=total, as_of=as_of.isoformat())


async def send_due_reminders(services: Services, as_of: dt.datetime, batch_size: int) -> None:
    days: Literal[3, 7]
    for days in (3, 7):
        total = 0
        while True:
            async with services.db.acquire() as conn, conn.transaction():
                invoice_ids = await db.billing.claim_due_reminders(conn, days_open=days, now=as_of, limit=batch_size)
                if not invoice_ids:
                    break
                total += await services.jobs.enqueue_many(
                    email_intents.SEND_INVOICE_REMINDER_EMAIL,
                    [{"invoice_id": i, "days_open": days} for i in invoice_ids], conn=conn,
                    job_keys=[f"invoice-reminder:{i}:{days}" for i in invoice_ids],
                )  # fmt: skip
        log.info("invoice_reminders_enqueued", days_open=days, emails=total)
