"""Producers for the emails queue: one function per email a user or an admin receives."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import EMAILS

AdminEventKind = Literal["new_user", "subscription_started", "payment_failed", "subscription_canceled"]


class WelcomeEmailArgs(JobArgs):
    user_id: RowId


class PasswordResetEmailArgs(JobArgs):
    user_id: RowId
    reset_id: str


class ReceiptEmailArgs(JobArgs):
    invoice_id: str


class SummaryEmailArgs(JobArgs):
    user_id: RowId
    #: the first day of the period (the day itself for a daily summary, the Monday for a weekly one)
    period_start: dt.date


class TrialExpiredEmailArgs(JobArgs):
    user_id: RowId


class InvoiceReminderEmailArgs(JobArgs):
    invoice_id: str
    days_open: Literal[3, 7]


class AdminEmailArgs(JobArgs):
    kind: AdminEventKind
    user_id: RowId
    #: what makes the email unique: a signup's user id, a payment event's id
    event_key: str


class ReportReadyEmailArgs(JobArgs):
    report_id: RowId


SEND_REPORT_READY_EMAIL = JobRef("send_report_ready_email", EMAILS, ReportReadyEmailArgs)
SEND_WELCOME_EMAIL = JobRef("send_welcome_email", EMAILS, WelcomeEmailArgs)
SEND_PASSWORD_RESET_EMAIL = JobRef("send_password_reset_email", EMAILS, PasswordResetEmailArgs)
SEND_RECEIPT_EMAIL = JobRef("send_receipt_email", EMAILS, ReceiptEmailArgs)
SEND_DAILY_SUMMARY_EMAIL = JobRef("send_daily_summary_email", EMAILS, SummaryEmailArgs)
SEND_WEEKLY_SUMMARY_EMAIL = JobRef("send_weekly_summary_email", EMAILS, SummaryEmailArgs)
SEND_TRIAL_EXPIRED_EMAIL = JobRef("send_trial_expired_email", EMAILS, TrialExpiredEmailArgs)
SEND_INVOICE_REMINDER_EMAIL = JobRef("send_invoice_reminder_email", EMAILS, InvoiceReminderEmailArgs)
SEND_ADMIN_EMAIL = JobRef("send_admin_email", EMAILS, AdminEmailArgs)


def trial_expired_key(user_id: int) -> str:
    return f"trial-expired:{user_id}"


def invoice_reminder_key(invoice_id: str, days_open: int) -> str:
    return f"invoice-reminder:{invoice_id}:{days_open}"


def summary_key(kind: str, user_id: int, period_start: dt.date) -> str:
    return f"{kind}-summary:{user_id}:{period_start}"


async def enqueue_welcome_email(client: JobClient, *, user_id: int, conn: Connection | None = None) -> EnqueuedJob:
    """Welcome a new user; pass the signup's transaction as `conn` so a rolled-back signup sends nothing."""
    return await client.enqueue(
        SEND_WELCOME_EMAIL, WelcomeEmailArgs(user_id=user_id), conn=conn, job_key=f"welcome:{user_id}"
    )


async def enqueue_password_reset_email(
    client: JobClient, *, user_id: int, reset_id: str, conn: Connection | None = None
) -> EnqueuedJob:
    return await client.enqueue(
        SEND_PASSWORD_RESET_EMAIL, PasswordResetEmailArgs(user_id=user_id, reset_id=reset_id), conn=conn
    )


async def enqueue_receipt_email(client: JobClient, *, invoice_id: str, conn: Connection | None = None) -> EnqueuedJob:
    return await client.enqueue(
        SEND_RECEIPT_EMAIL, ReceiptEmailArgs(invoice_id=invoice_id), conn=conn, job_key=f"receipt:{invoice_id}"
    )


async def enqueue_admin_email(
    client: JobClient, *, kind: AdminEventKind, user_id: int, event_key: str, conn: Connection | None = None
) -> EnqueuedJob:
    args = AdminEmailArgs(kind=kind, user_id=user_id, event_key=event_key)
    return await client.enqueue(SEND_ADMIN_EMAIL, args, conn=conn, job_key=f"admin:{kind}:{event_key}")


async def enqueue_trial_expired_email(
    client: JobClient, *, user_id: int, conn: Connection | None = None
) -> EnqueuedJob:
    return await client.enqueue(
        SEND_TRIAL_EXPIRED_EMAIL, TrialExpiredEmailArgs(user_id=user_id), conn=conn, job_key=trial_expired_key(user_id)
    )


async def enqueue_invoice_reminder_email(
    client: JobClient, *, invoice_id: str, days_open: Literal[3, 7], conn: Connection | None = None
) -> EnqueuedJob:
    args = InvoiceReminderEmailArgs(invoice_id=invoice_id, days_open=days_open)
    return await client.enqueue(
        SEND_INVOICE_REMINDER_EMAIL, args, conn=conn, job_key=invoice_reminder_key(invoice_id, days_open)
    )
