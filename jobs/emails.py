"""Email jobs: render a jinja2 template (HTML and text parts) and send it once."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import structlog

import db.emails
import db.users
from db.errors import NotFound
from jobs.services import Services
from millrace.context import JobContext
from millrace.declare import job
from millrace.retry import RetryPolicy, exponential
from producers.emails import SEND_WELCOME_EMAIL, WelcomeEmailArgs

log = structlog.get_logger(__name__)

# About 10 s, then 1 min, 6 min, 36 min: a mail server that is down is usually back within the hour.
EMAIL_RETRY = RetryPolicy(attempts=5, backoff=exponential(first_s=10, factor=6, cap_s=3600), give_up_on=(NotFound,))


@job(SEND_WELCOME_EMAIL, retry=EMAIL_RETRY, timeout_s=30)
async def send_welcome_email(ctx: JobContext[Services], args: WelcomeEmailArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        user = await db.users.get_user(conn, args.user_id)
    message = await render_email(ctx.services, "welcome", to=user.email, context={"user": user})
    await send_once(ctx, message, template="welcome", idempotency_key=str(user.id))


async def render_email(services: Services, template: str, *, to: str, context: dict[str, Any]) -> EmailMessage:
    env = services.templates
    message = EmailMessage()
    message["Subject"] = (await env.get_template(f"emails/{template}.subject").render_async(context)).strip()
    message["From"] = services.settings.email_from
    message["To"] = to
    message["Message-ID"] = make_msgid(domain="millrace.local")
    message.set_content(await env.get_template(f"emails/{template}.txt").render_async(context))
    message.add_alternative(await env.get_template(f"emails/{template}.html").render_async(context), subtype="html")
    return message


async def send_once(ctx: JobContext[Services], message: EmailMessage, *, template: str, idempotency_key: str) -> None:
    """Send unless this (template, recipient, key) was sent before; a concurrent run waits, then skips."""
    guard = {"template": template, "recipient": str(message["To"]), "idempotency_key": idempotency_key}
    async with ctx.services.db.acquire() as conn, conn.transaction():
        if not await db.emails.lock_unsent(conn, **guard, job_id=ctx.job_id):
            log.info("email_already_sent", template=template)
            return
        await ctx.services.mailer.send(message)
        await db.emails.mark_sent(conn, **guard, job_id=ctx.job_id)
    log.info("email_sent", template=template)
