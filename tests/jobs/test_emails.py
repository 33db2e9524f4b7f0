"""The welcome email job, through a real arq worker, to a real SMTP server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import jinja2
import pytest

import db.users
import queues
from jobs.emails import message_id, render_email
from jobs.services import open_services
from millrace import Pool, store
from millrace.client import JobClient
from producers.emails import SEND_WELCOME_EMAIL, WelcomeEmailArgs, enqueue_welcome_email
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.smtp import smtp_server

NOW = dt.datetime.now(dt.UTC)


async def run_emails_worker(settings: Settings) -> None:
    await run_app_workers(settings, queues.EMAILS)


async def test_welcome_email_is_sent_once_when_its_job_runs_twice(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    async with pool.acquire() as conn:
        user = await db.users.insert_user(conn, email="grace@example.com", name="Grace")
    with smtp_server() as (mailbox, port):
        settings = Settings(database_url=database_url, redis_url=redis_url, email_backend="smtp", smtp_port=port)
        await enqueue_welcome_email(client, user_id=user.id)
        await run_emails_worker(settings)
        # the same job again, as after a redelivery: no job key this time, so it is a second job
        await client.enqueue(SEND_WELCOME_EMAIL, WelcomeEmailArgs(user_id=user.id))
        await run_emails_worker(settings)
    assert len(mailbox.to("grace@example.com")) == 1
    assert {j.status for j in await store.jobs.list_jobs(pool)} == {"succeeded"}


async def test_welcome_for_a_missing_user_is_dead_at_once(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, eml_dir=tmp_path / "mail")
    enqueued = await enqueue_welcome_email(client, user_id=4242)
    await run_emails_worker(settings)
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, enqueued.id)
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "NotFound")


async def test_templates_escape_html_and_refuse_missing_values(client: JobClient, database_url: str) -> None:
    """What users type reaches the HTML part escaped; a variable a template lacks is an error, not a blank."""
    user = db.users.User(id=1, email="x@example.com", name="<script>alert(1)</script>", created_at=NOW)
    async with open_services(Settings(database_url=database_url), client) as services:
        message = render_email(services, "welcome", to=user.email, context={"user": user})
        with pytest.raises(jinja2.UndefinedError):
            render_email(services, "welcome", to=user.email, context={})
    html = message.get_body(("html",))
    assert html is not None
    assert "&lt;script&gt;" in html.get_content()
    assert "<script>" not in html.get_content()


def test_an_email_keeps_its_message_id_on_every_attempt() -> None:
    """A resend after a kill is the same message to the mail system, not a second one."""
    first = message_id("welcome", "ada@example.com", "user:1")
    assert first == message_id("welcome", "ada@example.com", "user:1")
    assert first != message_id("welcome", "ada@example.com", "user:2")
    assert first != message_id("welcome", "bob@example.com", "user:1")
    assert first.startswith("<")
    assert first.endswith("@millrace.local>")
