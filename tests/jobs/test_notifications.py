"""Slack notifications go out through the guarded client: a real worker, a real Slack stand-in on loopback."""

from __future__ import annotations

import re

import db.notifications
import db.users
import queues
from millrace import JobClient, Pool, store
from producers.notifications import DELIVER_SLACK, NotificationArgs
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.providers import provider_server


async def user_with_slack(pool: Pool, webhook_url: str) -> int:
    user = await db.users.insert_user(pool, email="ann@example.com", name="Ann")
    preferences = db.notifications.Preferences(
        user_id=user.id, in_app=False, slack=True, sms=False, slack_webhook_url=webhook_url, phone=None
    )
    await db.notifications.set_preferences(pool, preferences)
    return user.id


def notification(user_id: int) -> NotificationArgs:
    return NotificationArgs(user_id=user_id, event_key="task:1", title="Review", body="Q3 report")


async def test_a_slack_webhook_on_an_allowed_host_is_delivered(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    with provider_server() as providers:
        user_id = await user_with_slack(pool, providers.url("slack") + "/services/T0/B0/x")
        enqueued = await client.enqueue(DELIVER_SLACK, notification(user_id))
        settings = Settings(database_url=database_url, redis_url=redis_url, outbound_allowed_hosts=["127.0.0.1"])
        await run_app_workers(settings, queues.NOTIFICATIONS)
    assert providers.delivered("slack") == [{"text": "*Review*\nQ3 report"}]
    assert (await store.jobs.get_job(pool, enqueued.id)).status == "succeeded"


async def test_a_slack_webhook_whose_name_resolves_inside_is_dead_at_once_and_reaches_nothing(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    """Saved while it looked public, perhaps; at delivery the guard looks the name up and refuses loopback."""
    with provider_server() as providers:
        user_id = await user_with_slack(pool, f"http://localhost:{providers.port}/slack")
        enqueued = await client.enqueue(DELIVER_SLACK, notification(user_id))
        await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.NOTIFICATIONS)
    job = await store.jobs.get_job(pool, enqueued.id)
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "UnsafeUrl")
    assert re.search(r"'localhost' resolves to (127\.0\.0\.1|::1), which is not a public", job.last_error or "")
    assert providers.attempts("slack") == 0


async def test_a_slack_webhook_that_redirects_is_dead_at_once_not_delivered(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    """Redirects are not followed (the next hop could be inside): nothing was delivered, and never will be."""
    with provider_server() as providers:
        providers.fail("slack", 302)
        user_id = await user_with_slack(pool, providers.url("slack") + "/services/T0/B0/x")
        enqueued = await client.enqueue(DELIVER_SLACK, notification(user_id))
        settings = Settings(database_url=database_url, redis_url=redis_url, outbound_allowed_hosts=["127.0.0.1"])
        await run_app_workers(settings, queues.NOTIFICATIONS)
    job = await store.jobs.get_job(pool, enqueued.id)
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "GiveUp")
    assert "redirects are not followed" in (job.last_error or "")
