"""Scheduled business jobs: summaries, trial expiry, unpaid-invoice reminders.

Each walks its users or invoices in batches, one short transaction a batch, and enqueues the emails of
a batch in one statement inside it. Each is idempotent per user and period: rows already handled are
not picked again (trials expired, invoices marked reminded), pending emails share a job key, and the
sent-email guard holds even when a second run comes after the first one's emails went out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import structlog

import db.billing
from jobs.policies import retrying
from jobs.services import Services
from millrace import Connection, CronSchedule, JobArgs, JobContext, JobRef, cron, fixed, job
from producers import emails as email_intents
from producers import schedules as intents
from producers.emails import SummaryEmailArgs
from queues import MAINTENANCE

log = structlog.get_logger(__name__)

T = TypeVar("T")
A = TypeVar("A", bound=JobArgs)

SCHEDULE_RETRY = retrying(3, fixed(60, jitter=0.2))
DEFAULT_BATCH = 1000


@job(intents.SEND_DAILY_SUMMARIES, retry=SCHEDULE_RETRY, timeout_s=600)
async def send_daily_summaries(ctx: JobContext[Services], args: intents.PeriodArgs) -> None:
    await fan_out_summaries(
        ctx.services, email_intents.SEND_DAILY_SUMMARY_EMAIL, "daily", args.period_start, args.batch_size
    )


@job(intents.SEND_WEEKLY_SUMMARIES, retry=SCHEDULE_RETRY, timeout_s=600)
async def send_weekly_summaries(ctx: JobContext[Services], args: intents.PeriodArgs) -> None:
    await fan_out_summaries(
        ctx.services, email_intents.SEND_WEEKLY_SUMMARY_EMAIL, "weekly", args.period_start, args.batch_size
    )


@job(intents.EXPIRE_TRIALS, retry=SCHEDULE_RETRY, timeout_s=600)
async def expire_trials(ctx: JobContext[Services], args: intents.AsOfArgs) -> None:
    await expire_ended_trials(ctx.services, args.as_of, args.batch_size)


@job(intents.REMIND_UNPAID_INVOICES, retry=SCHEDULE_RETRY, timeout_s=600)
async def remind_unpaid_invoices(ctx: JobContext[Services], args: intents.AsOfArgs) -> None:
    await send_due_reminders(ctx.services, args.as_of, args.batch_size)


@cron(queue=MAINTENANCE, schedule=CronSchedule(hour=8, minute=0), missed="run_once", retry=SCHEDULE_RETRY)
async def daily_summaries_at_eight(ctx: JobContext[Services]) -> None:
    await fan_out_summaries(
        ctx.services, email_intents.SEND_DAILY_SUMMARY_EMAIL, "daily", _tick(ctx).date(), DEFAULT_BATCH
    )


@cron(queue=MAINTENANCE, schedule=CronSchedule(weekday=0, hour=8, minute=0), missed="run_once", retry=SCHEDULE_RETRY)
async def weekly_summaries_on_monday(ctx: JobContext[Services]) -> None:
    await fan_out_summaries(
        ctx.services, email_intents.SEND_WEEKLY_SUMMARY_EMAIL, "weekly", _tick(ctx).date(), DEFAULT_BATCH
    )


@cron(queue=MAINTENANCE, schedule=CronSchedule(minute=5), missed="run_once", retry=SCHEDULE_RETRY)
async def hourly_trial_expiry(ctx: JobContext[Services]) -> None:
    await expire_ended_trials(ctx.services, _tick(ctx), DEFAULT_BATCH)


@cron(queue=MAINTENANCE, schedule=CronSchedule(hour=9, minute=0), missed="run_once", retry=SCHEDULE_RETRY)
async def daily_invoice_reminders(ctx: JobContext[Services]) -> None:
    await send_due_reminders(ctx.services, _tick(ctx), DEFAULT_BATCH)


def _tick(ctx: JobContext[Services]) -> dt.datetime:
    assert ctx.tick_at is not None, "cron functions always run for a tick"
    return ctx.tick_at


async def enqueue_in_batches(
    services: Services,
    claim: Callable[[Connection], Awaitable[Sequence[T]]],
    ref: JobRef[A],
    args_of: Callable[[T], A],
    key_of: Callable[[T], str],
) -> int:
    """Claim a batch and enqueue one job per item in the same short transaction, until none is left."""
    total = 0
    while True:
        async with services.db.acquire() as conn, conn.transaction():
            items = await claim(conn)
            if not items:
                return total
            total += await services.jobs.enqueue_many(
                ref, [args_of(i) for i in items], conn=conn, job_keys=[key_of(i) for i in items]
            )


async def fan_out_summaries(
    services: Services, ref: JobRef[SummaryEmailArgs], kind: str, period_start: dt.date, batch_size: int
) -> None:
    as_of = dt.datetime.combine(period_start, dt.time(), tzinfo=dt.UTC)
    after_id = 0

    async def next_page(conn: Connection) -> list[int]:
        nonlocal after_id  # keyset paging: these users are not selected again by this walk
        user_ids = await db.billing.list_active_user_ids(conn, after_id=after_id, limit=batch_size, now=as_of)
        after_id = user_ids[-1] if user_ids else after_id
        return user_ids

    total = await enqueue_in_batches(
        services,
        next_page,
        ref,
        args_of=lambda u: SummaryEmailArgs(user_id=u, period_start=period_start),
        key_of=lambda u: email_intents.summary_key(kind, u, period_start),
    )
    log.info("summaries_enqueued", kind=kind, period_start=period_start.isoformat(), emails=total)


async def expire_ended_trials(services: Services, as_of: dt.datetime, batch_size: int) -> None:
    total = await enqueue_in_batches(
        services,
        lambda conn: db.billing.expire_trials(conn, now=as_of, limit=batch_size),
        email_intents.SEND_TRIAL_EXPIRED_EMAIL,
        args_of=lambda u: email_intents.TrialExpiredEmailArgs(user_id=u),
        key_of=email_intents.trial_expired_key,
    )
    log.info("trials_expired", emails=total, as_of=as_of.isoformat())


async def send_due_reminders(services: Services, as_of: dt.datetime, batch_size: int) -> None:
    await remind_after(services, 3, as_of, batch_size)
    await remind_after(services, 7, as_of, batch_size)


async def remind_after(services: Services, days: Literal[3, 7], as_of: dt.datetime, batch_size: int) -> None:
    total = await enqueue_in_batches(
        services,
        lambda conn: db.billing.claim_due_reminders(conn, days_open=days, now=as_of, limit=batch_size),
        email_intents.SEND_INVOICE_REMINDER_EMAIL,
        args_of=lambda i: email_intents.InvoiceReminderEmailArgs(invoice_id=i, days_open=days),
        key_of=lambda i: email_intents.invoice_reminder_key(i, days),
    )
    log.info("invoice_reminders_enqueued", days_open=days, emails=total)
