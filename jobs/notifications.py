"""Notifications: one event, one job per channel the user chose, so a failing channel retries alone."""

from __future__ import annotations

import structlog

import db.notifications
from jobs.policies import retrying
from jobs.providers import check_response
from jobs.services import Services
from jobs.ssrf import parse_user_url
from millrace import GiveUp, JobContext, JobRef, exponential, job
from producers import notifications as intents
from producers.notifications import NotificationArgs

log = structlog.get_logger(__name__)

CHANNEL_RETRY = retrying(6, exponential(first_s=5, factor=3, cap_s=900))


@job(intents.NOTIFY_USER, retry=CHANNEL_RETRY)
async def notify_user(ctx: JobContext[Services], args: NotificationArgs) -> None:
    """Read the user's preferences now, and enqueue one delivery job per chosen channel."""
    async with ctx.services.db.acquire() as conn, conn.transaction():
        preferences = await db.notifications.get_preferences(conn, args.user_id)
        chosen: list[JobRef[NotificationArgs]] = []
        if preferences.in_app:
            chosen.append(intents.DELIVER_IN_APP)
        if preferences.slack and preferences.slack_webhook_url:
            chosen.append(intents.DELIVER_SLACK)
        if preferences.sms and preferences.phone:
            chosen.append(intents.DELIVER_SMS)
        for ref in chosen:
            await ctx.services.jobs.enqueue(ref, args, conn=conn, job_key=f"{ref.name}:{args.user_id}:{args.event_key}")
    log.info("notification_fanned_out", channels=[ref.name for ref in chosen])


@job(intents.DELIVER_IN_APP, retry=CHANNEL_RETRY)
async def deliver_in_app_notification(ctx: JobContext[Services], args: NotificationArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        await db.notifications.insert_notification(
            conn, user_id=args.user_id, event_key=args.event_key, title=args.title, body=args.body
        )


@job(intents.DELIVER_SLACK, retry=CHANNEL_RETRY)
async def deliver_slack_notification(ctx: JobContext[Services], args: NotificationArgs) -> None:
    async with ctx.services.db.acquire() as conn:
        preferences = await db.notifications.get_preferences(conn, args.user_id)
    if not preferences.slack_webhook_url:
        raise GiveUp("the user removed their Slack webhook")
    # the guarded client checks the address it connects to: the name may resolve elsewhere since it was saved
    response = await ctx.services.user_http.post(
        parse_user_url(preferences.slack_webhook_url), json={"text": f"*{args.title}*\n{args.body}"}
    )
    if response.is_redirect:  # never followed (it could point inside), so nothing was delivered
        raise GiveUp(f"the Slack webhook answered {response.status_code}: redirects are not followed")
    check_response(response, "Slack")


@job(intents.DELIVER_SMS, retry=CHANNEL_RETRY)
async def deliver_sms_notification(ctx: JobContext[Services], args: NotificationArgs) -> None:
    settings = ctx.services.settings
    if not settings.sms_api_url or not settings.sms_api_token:
        raise GiveUp("no SMS provider configured (SMS_API_URL, SMS_API_TOKEN)")
    async with ctx.services.db.acquire() as conn:
        preferences = await db.notifications.get_preferences(conn, args.user_id)
    if not preferences.phone:
        raise GiveUp("the user removed their phone number")
    response = await ctx.services.http.post(
        settings.sms_api_url,
        json={"to": preferences.phone, "body": f"{args.title}: {args.body}"[:300]},
        # the provider drops a repeated key: a retry after a lost answer sends no second SMS
        headers={
            "Authorization": f"Bearer {settings.sms_api_token.get_secret_value()}",
            "Idempotency-Key": f"{args.user_id}:{args.event_key}",
        },
    )
    check_response(response, "SMS")
