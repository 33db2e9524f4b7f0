"""Email jobs: render a jinja2 template (HTML and text parts, shared layout) and send it once.

"Once" is per (template, recipient, idempotency key): a `sent_emails` row, locked while sending, makes
a second run of the same job (a redelivery, a retry after a crash) find the email sent and stop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import structlog

import db.billing
import db.emails
import db.reports
import db.users
from jobs.pdf import format_amount, invoice_pdf
from jobs.policies import retrying
from jobs.services import Services
from millrace import GiveUp, JobContext, exponential, job
from producers import emails as intents

log = structlog.get_logger(__name__)

# About 10 s, then 1 min, 6 min, 36 min: a mail server that is down is usually back within the hour.
EMAIL_RETRY = retrying(5, exponential(first_s=10, factor=6, cap_s=3600))


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str
    subtype: str


@job(intents.SEND_WELCOME_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_welcome_email(ctx: JobContext[Services], args: intents.WelcomeEmailArgs) -> None:
    user = await _user(ctx, args.user_id)
    await send_once(ctx, "welcome", to=user.email, key=str(user.id), context={"user": user})


@job(intents.SEND_PASSWORD_RESET_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_password_reset_email(ctx: JobContext[Services], args: intents.PasswordResetEmailArgs) -> None:
    user = await _user(ctx, args.user_id)
    reset_url = f"http://{ctx.services.settings.web_host}:{ctx.services.settings.web_port}/reset/{args.reset_id}"
    await send_once(
        ctx, "password_reset", to=user.email, key=args.reset_id, context={"user": user, "reset_url": reset_url}
    )


@job(intents.SEND_RECEIPT_EMAIL, retry=EMAIL_RETRY, timeout_s=60)
async def send_receipt_email(ctx: JobContext[Services], args: intents.ReceiptEmailArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        invoice = await db.billing.get_invoice(conn, args.invoice_id)
        user = await db.users.get_user(conn, invoice.user_id)
    pdf = Attachment(
        filename=f"invoice-{invoice.id}.pdf", content=invoice_pdf(invoice, user), maintype="application", subtype="pdf"
    )
    amount = format_amount(invoice.amount_cents, invoice.currency)
    await send_once(
        ctx,
        "receipt",
        to=user.email,
        key=invoice.id,
        context={"user": user, "invoice": invoice, "amount": amount},
        attachments=[pdf],
    )


@job(intents.SEND_DAILY_SUMMARY_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_daily_summary_email(ctx: JobContext[Services], args: intents.SummaryEmailArgs) -> None:
    await send_summary(ctx, args, "daily_summary", period_name="day")


@job(intents.SEND_WEEKLY_SUMMARY_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_weekly_summary_email(ctx: JobContext[Services], args: intents.SummaryEmailArgs) -> None:
    await send_summary(ctx, args, "weekly_summary", period_name="week")


async def send_summary(
    ctx: JobContext[Services], args: intents.SummaryEmailArgs, template: str, *, period_name: str
) -> None:
    """Once per user and period: the period's first day is the email's idempotency key."""
    user = await _user(ctx, args.user_id)
    period = args.period_start.isoformat()
    context = {"user": user, period_name: period, "lines": await _summary_lines(ctx, user.id)}
    await send_once(ctx, template, to=user.email, key=period, context=context)


@job(intents.SEND_TRIAL_EXPIRED_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_trial_expired_email(ctx: JobContext[Services], args: intents.TrialExpiredEmailArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        user = await db.users.get_user(conn, args.user_id)
        subscription = await db.billing.get_subscription(conn, args.user_id)
    ended = "-" if subscription.trial_ends_at is None else f"{subscription.trial_ends_at:%Y-%m-%d}"
    await send_once(ctx, "trial_expired", to=user.email, key="trial", context={"user": user, "ended": ended})


@job(intents.SEND_INVOICE_REMINDER_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_invoice_reminder_email(ctx: JobContext[Services], args: intents.InvoiceReminderEmailArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        invoice = await db.billing.get_invoice(conn, args.invoice_id)
        user = await db.users.get_user(conn, invoice.user_id)
    if invoice.status == "paid":
        log.info("invoice_reminder_not_needed", invoice_id=invoice.id)
        return
    amount = format_amount(invoice.amount_cents, invoice.currency)
    await send_once(
        ctx,
        "invoice_reminder",
        to=user.email,
        key=f"{invoice.id}:{args.days_open}",
        context={"user": user, "invoice": invoice, "amount": amount, "days": args.days_open},
    )


_ADMIN_TITLES = {
    "new_user": "New signup",
    "subscription_started": "Subscription started",
    "payment_failed": "Payment failed",
    "subscription_canceled": "Subscription canceled",
}


@job(intents.SEND_ADMIN_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_admin_email(ctx: JobContext[Services], args: intents.AdminEmailArgs) -> None:
    user = await _user(ctx, args.user_id)
    lines = [f"User {user.id}: {user.name} <{user.email}>", f"Event: {args.event_key}"]
    await send_once(
        ctx,
        "admin_event",
        to=ctx.services.settings.admin_email,
        key=f"{args.kind}:{args.event_key}",
        context={"title": _ADMIN_TITLES[args.kind], "lines": lines},
    )


@job(intents.SEND_REPORT_READY_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_report_ready_email(ctx: JobContext[Services], args: intents.ReportReadyEmailArgs) -> None:
    services = ctx.services
    report = await db.reports.get_report(services.db, args.report_id)
    if report.storage_key is None or services.links is None:
        raise GiveUp("the report has no file, or no DOWNLOAD_LINK_SECRET is set to sign a link to it")
    user = await _user(ctx, report.user_id)
    name = f"{report.report_type}-report-{report.id}.csv"
    valid_s = services.settings.download_link_valid_s
    link = services.links.link(report.storage_key, name=name, valid_s=valid_s)
    context = {"user": user, "report": report, "link": link, "valid_days": max(1, round(valid_s / 86400))}
    await send_once(ctx, "report_ready", to=user.email, key=str(report.id), context=context)


async def _user(ctx: JobContext[Services], user_id: int) -> db.users.User:
    async with ctx.services.db.acquire() as conn:
        return await db.users.get_user(conn, user_id)


async def _summary_lines(ctx: JobContext[Services], user_id: int) -> list[str]:
    async with ctx.services.db.acquire() as conn:
        unread = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id
        )
    return [f"{unread} unread notification(s)"]


def message_id(template: str, to: str, key: str) -> str:
    """The same Message-ID for the same e-mail, on every attempt.

    SMTP cannot be fenced: a worker killed after the server accepted a message and before the record of
    it committed sends it again. Mail systems take two messages with one Message-ID as one, so a resend
    is the same message, not a second one.
    """
    digest = hashlib.sha256("\0".join((template, to, key)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"<{digest[:40]}@millrace.local>"


def render_email(
    services: Services,
    template: str,
    *,
    to: str,
    context: dict[str, Any],
    attachments: Sequence[Attachment] = (),
    message_id: str | None = None,
) -> EmailMessage:
    """The message, or GiveUp when the data cannot make one (a header value the email package refuses)."""
    env = services.templates
    # a subject is one line: a user's name with a line break in it must not start a new header
    subject = " ".join(env.get_template(f"emails/{template}.subject").render(context).split())
    text = env.get_template(f"emails/{template}.txt").render(context)
    html = env.get_template(f"emails/{template}.html").render(context)
    try:
        return _message(subject, services.settings.email_from, to, text, html, attachments, message_id)
    except ValueError as error:  # CR/LF in an address or an attachment's name: the same on every attempt
        raise GiveUp(f"cannot build this email: {error}") from None


def _message(
    subject: str,
    sender: str,
    to: str,
    text: str,
    html: str,
    attachments: Sequence[Attachment],
    message_id: str | None,
) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = message_id or make_msgid(domain="millrace.local")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for attachment in attachments:
        message.add_attachment(
            attachment.content, maintype=attachment.maintype, subtype=attachment.subtype, filename=attachment.filename
        )
    return message


async def send_once(
    ctx: JobContext[Services],
    template: str,
    *,
    to: str,
    key: str,
    context: dict[str, Any],
    attachments: Sequence[Attachment] = (),
) -> None:
    """Send unless this (template, recipient, key) was sent before; a concurrent run waits, then skips."""
    message = render_email(
        ctx.services,
        template,
        to=to,
        context=context,
        attachments=attachments,
        message_id=message_id(template, to, key),
    )
    guard = {"template": template, "recipient": to, "idempotency_key": key}
    async with ctx.services.db.acquire() as conn, conn.transaction():
        if not await db.emails.lock_unsent(conn, **guard, job_id=ctx.job_id):
            log.info("email_already_sent", template=template)
            return
        await ctx.services.mailer.send(message)
        await db.emails.mark_sent(conn, **guard, job_id=ctx.job_id)
    log.info("email_sent", template=template)
