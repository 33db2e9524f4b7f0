"""A task assigned fans out to the assignee's channels: in-app, Slack, SMS; each retries alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from millrace import Pool, store
from tests.platform import Platform, running_platform
from tests.processes import wait_for

pytestmark = pytest.mark.e2e


async def user_with_channels(platform: Platform, *, slack: bool, sms: bool) -> int:
    response = await platform.http.post("/users", json={"email": "ann@example.com", "name": "Ann"})
    user_id: int = response.json()["id"]
    platform.http.headers["Authorization"] = f"Bearer {response.json()['api_token']}"
    preferences = {
        "in_app": True,
        "slack": slack,
        "sms": sms,
        "phone": "+4915112345678",
        "slack_webhook_url": platform.providers.url("slack") + "/services/T0/B0/x",
    }
    assert (await platform.http.put(f"/users/{user_id}/preferences", json=preferences)).status_code == 200
    return user_id


async def test_a_failing_channel_retries_alone(pool: Pool, database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with running_platform(database_url, redis_url, tmp_path) as platform:
        user_id = await user_with_channels(platform, slack=True, sms=True)
        platform.providers.fail("slack", 500)
        created = await platform.http.post("/tasks", json={"title": "Review Q3 report", "assignee_id": user_id})
        assert created.status_code == 201

        async def in_app_and_sms() -> bool:
            listed = (await platform.http.get(f"/users/{user_id}/notifications")).json()
            return len(listed) == 1 and len(platform.providers.delivered("sms")) == 1

        await wait_for(in_app_and_sms, timeout_s=20, what="the in-app and SMS notifications")
        await wait_for(lambda: platform.providers.attempts("slack") >= 1, timeout_s=20, what="Slack's first refusal")
        assert platform.providers.delivered("slack") == []
        platform.providers.recover("slack")
        await wait_for(lambda: platform.providers.delivered("slack"), timeout_s=30, what="Slack after recovery")
        await asyncio.sleep(1)
        (slack,) = platform.providers.delivered("slack")
        (sms,) = platform.providers.delivered("sms")
    assert "Review Q3 report" in slack["text"]
    assert sms["to"] == "+4915112345678"
    slack_job = (await store.jobs.list_jobs(pool, function="deliver_slack_notification"))[0]
    assert (slack_job.status, slack_job.last_error_type) == ("succeeded", "ProviderUnavailable")
    assert slack_job.attempts >= 2
    for other in ("deliver_in_app_notification", "deliver_sms_notification"):
        assert [(j.status, j.attempts) for j in await store.jobs.list_jobs(pool, function=other)] == [("succeeded", 1)]


async def test_preferences_decide_which_channels_run(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_platform(database_url, redis_url, tmp_path) as platform:
        user_id = await user_with_channels(platform, slack=False, sms=False)
        await platform.http.post("/tasks", json={"title": "Quiet task", "assignee_id": user_id})

        async def in_app() -> bool:
            return len((await platform.http.get(f"/users/{user_id}/notifications")).json()) == 1

        await wait_for(in_app, timeout_s=20, what="the in-app notification")
        await asyncio.sleep(1)
        assert platform.providers.attempts("slack") == platform.providers.attempts("sms") == 0


async def test_internal_webhook_urls_are_refused(pool: Pool, database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with running_platform(database_url, redis_url, tmp_path) as platform:
        created = (await platform.http.post("/users", json={"email": "x@example.com", "name": "X"})).json()
        user_id = created["id"]
        platform.http.headers["Authorization"] = f"Bearer {created['api_token']}"
        for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/hook", "http://localhost:6379/"):
            response = await platform.http.put(
                f"/users/{user_id}/preferences", json={"slack": True, "slack_webhook_url": url}
            )
            assert response.status_code == 400, url
            assert "not a public address" in response.json()["detail"]
            assert "10.0.0.8" not in response.text  # no internal address told
            assert "127.0.0.1" not in response.text


async def test_sms_provider_429_retry_after_is_honoured(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The SMS API says "429, Retry-After: 2": the channel waits that long, not its own 5 s backoff."""
    async with running_platform(database_url, redis_url, tmp_path) as platform:
        user_id = await user_with_channels(platform, slack=False, sms=True)
        platform.providers.fail("sms", 429, retry_after="2")
        await platform.http.post("/tasks", json={"title": "Throttled", "assignee_id": user_id})
        await wait_for(lambda: platform.providers.attempts("sms") >= 1, timeout_s=20, what="the first SMS attempt")
        platform.providers.recover("sms")
        await wait_for(lambda: platform.providers.delivered("sms"), timeout_s=20, what="the SMS after Retry-After")
    (job,) = await store.jobs.list_jobs(pool, function="deliver_sms_notification")
    first, second = await store.jobs.list_attempts(pool, job.id)
    assert (job.status, first.error_type) == ("succeeded", "RetryAfter")
    assert first.finished_at is not None
    assert second.started_at is not None
    assert 2.0 <= (second.started_at - first.finished_at).total_seconds() < 4.0
