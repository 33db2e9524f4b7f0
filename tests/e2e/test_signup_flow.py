"""The core seen working: signup over HTTP, welcome email through a real arq worker to a real SMTP server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from millrace import Pool, store
from scripts.demo_load import wait_until_up
from tests.processes import processes, wait_for
from tests.servers import free_port
from tests.smtp import smtp_server

pytestmark = pytest.mark.e2e


async def test_signup_sends_the_welcome_email_once(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    web_port = free_port()
    with smtp_server() as (mailbox, smtp_port):
        async with processes(database_url, redis_url, tmp_path) as start:
            env = {
                "EMAIL_BACKEND": "smtp",
                "SMTP_PORT": str(smtp_port),
                "WEB_PORT": str(web_port),
                "LOG_FORMAT": "json",
            }
            worker = start("arq", "jobs.worker.EmailsWorker", **env)
            start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=10) as http:
                await wait_until_up(http, timeout_s=30)
                created = await http.post("/users", json={"email": "ada@example.com", "name": "Ada"})
                assert created.status_code == 201
                duplicate = await http.post("/users", json={"email": "ada@example.com", "name": "Ada again"})
                assert duplicate.status_code == 409
                invalid = await http.post("/users", json={"email": "not-an-address", "name": "X"})
                assert invalid.status_code == 422

                await wait_for(lambda: mailbox.to("ada@example.com"), timeout_s=30, what="the welcome email")

                async def recorded() -> bool:
                    welcome = await store.jobs.list_jobs(pool, function="send_welcome_email")
                    return [j.status for j in welcome] == ["succeeded"]

                await wait_for(recorded, timeout_s=10, what="the job's record to say it succeeded")

    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    (finished,) = [line for line in lines if line["event"] == "job_finished" and line["job"] == "send_welcome_email"]
    assert finished["job_id"] == created.json()["welcome_job_id"]
    assert (finished["queue"], finished["attempt"], finished["outcome"]) == ("emails", 1, "succeeded")
    assert finished["level"] == "info"
    assert "timestamp" in finished
    (welcome,) = mailbox.to("ada@example.com")
    assert welcome["Subject"] == "Welcome to Millrace, Ada"
    html = welcome.get_body(("html",))
    text = welcome.get_body(("plain",))
    assert html is not None
    assert text is not None
    assert "<h1>Welcome, Ada!</h1>" in html.get_content()
    assert "Welcome, Ada!" in text.get_content()
    async with pool.acquire() as conn:
        (job,) = await store.jobs.list_jobs(conn, function="send_welcome_email")
        assert job.id == created.json()["welcome_job_id"]
        assert job.status == "succeeded"
        # the 409 rolled back: one signup's jobs (welcome and admin emails; no CRM is configured), not two
        assert len(await store.jobs.list_jobs(conn)) == 2
