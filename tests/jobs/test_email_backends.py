"""Email providers that fail: what each failure means for the job, through a real arq worker."""

from __future__ import annotations

import db.users
import queues
from millrace import Pool, store
from millrace.client import JobClient
from producers.emails import enqueue_welcome_email
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.providers import Providers, provider_server


async def first_attempt(settings: Settings) -> None:
    """Run one attempt of one job, then stop: retries are scheduled seconds away."""
    await run_app_workers(settings, queues.EMAILS, max_burst_jobs=1)


def http_settings(database_url: str, redis_url: str, providers: Providers) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        email_backend="http",
        email_api_url=providers.url("email") + "/messages",
        email_api_token="t",
        http_timeout_s=0.5,
    )


async def welcome_job(client: JobClient, pool: Pool) -> str:
    async with pool.acquire() as conn:
        user = await db.users.insert_user(conn, email="lin@example.com", name="Lin")
    return (await enqueue_welcome_email(client, user_id=user.id)).id


async def test_provider_5xx_is_retried(client: JobClient, pool: Pool, database_url: str, redis_url: str) -> None:
    with provider_server() as providers:
        providers.fail("email", 503)
        job_id = await welcome_job(client, pool)
        await first_attempt(http_settings(database_url, redis_url, providers))
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.last_error_type) == ("retrying", "ProviderUnavailable")
    assert job.run_at is not None


async def test_provider_4xx_is_dead_with_its_message(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    with provider_server() as providers:
        providers.fail("email", 422)
        job_id = await welcome_job(client, pool)
        await first_attempt(http_settings(database_url, redis_url, providers))
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.last_error_type) == ("dead", "GiveUp")
    assert "email API refused the request (422)" in (job.last_error or "")
    assert "injected 422" in (job.last_error or "")


async def test_provider_that_hangs_times_out_and_is_retried(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    with provider_server() as providers:
        providers.hang("email", seconds=5)
        job_id = await welcome_job(client, pool)
        await first_attempt(http_settings(database_url, redis_url, providers))
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.last_error_type) == ("retrying", "ReadTimeout")


async def test_429_retry_after_is_honoured(client: JobClient, pool: Pool, database_url: str, redis_url: str) -> None:
    with provider_server() as providers:
        providers.fail("email", 429, retry_after="7")
        job_id = await welcome_job(client, pool)
        await first_attempt(http_settings(database_url, redis_url, providers))
    job = await store.jobs.get_job(pool, job_id)
    attempt = (await store.jobs.list_attempts(pool, job_id))[0]
    assert (job.status, job.last_error_type) == ("retrying", "RetryAfter")
    assert job.run_at is not None
    assert attempt.finished_at is not None
    assert abs((job.run_at - attempt.finished_at).total_seconds() - 7) < 0.5


async def test_delivered_email_carries_both_parts(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    with provider_server() as providers:
        job_id = await welcome_job(client, pool)
        await first_attempt(http_settings(database_url, redis_url, providers))
        (sent,) = providers.delivered("email")
    assert (await store.jobs.get_job(pool, job_id)).status == "succeeded"
    assert sent["to"] == ["lin@example.com"]
    assert "Welcome, Lin!" in sent["text"]
    assert "<h1>Welcome, Lin!</h1>" in sent["html"]
