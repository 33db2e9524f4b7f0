"""The whole platform as real processes: the web app, one arq worker per queue, an SMTP server and the
third-party providers on loopback. For end-to-end tests of the event flows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

import queues
from scripts.demo_load import wait_until_up
from tests.processes import Process, processes
from tests.providers import Providers, provider_server
from tests.servers import free_port
from tests.smtp import Mailbox, smtp_server

WEBHOOK_SECRET = "whsec_test_current"
OLD_WEBHOOK_SECRET = "whsec_test_previous"
# the event flows' queues: not maintenance, whose crons run on a wall-clock schedule the tests do not wait
# for, nor the heavy flows' (bulk, documents, ai), which have end-to-end tests of their own; every worker
# process holds a few PostgreSQL connections, and `make chaos` runs two platforms under the server's 100
_OWN_TESTS = (queues.MAINTENANCE, queues.BULK, queues.DOCUMENTS, queues.AI)
WORKER_CLASSES = tuple(q.worker_class_name for q in queues.ALL if q not in _OWN_TESTS)


@dataclass
class Platform:
    http: httpx.AsyncClient
    mailbox: Mailbox
    providers: Providers
    web: Process
    workers: list[Process]
    #: the worker class each of `workers` runs, and how to start one more with the platform's settings
    worker_classes: list[str]
    start_worker: Callable[[str], Process]

    def restart_worker(self, index: int) -> Process:
        """SIGKILL a worker, as when its machine dies, and start another of its class, as a supervisor would."""
        self.workers[index].kill()
        self.workers[index] = self.start_worker(self.worker_classes[index])
        return self.workers[index]


def platform_env(smtp_port: int, providers: Providers, web_port: int, email_backend: str) -> dict[str, str]:
    return {
        "EMAIL_BACKEND": email_backend,
        "SMTP_PORT": str(smtp_port),
        "EMAIL_API_URL": providers.url("email") + "/messages",
        "EMAIL_API_TOKEN": "email-token",
        "CRM_API_URL": providers.url("crm"),
        "CRM_API_TOKEN": "crm-token",
        "SMS_API_URL": providers.url("sms") + "/messages",
        "SMS_API_TOKEN": "sms-token",
        "HTTP_TIMEOUT_S": "1",
        "WEB_PORT": str(web_port),
        "WEBHOOK_SECRETS": json.dumps({"stripe": [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET]}),
        "OUTBOUND_ALLOWED_HOSTS": json.dumps(["127.0.0.1"]),
        "POLL_DELAY_S": "0.05",
        "LOG_FORMAT": "json",
    }


@asynccontextmanager
async def running_platform(
    database_url: str,
    redis_url: str,
    folder: Path,
    *,
    email_backend: str = "smtp",
    worker_copies: int = 1,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Platform]:
    web_port = free_port()
    with smtp_server() as (mailbox, smtp_port), provider_server() as providers:
        env = platform_env(smtp_port, providers, web_port, email_backend) | (extra_env or {})
        async with processes(database_url, redis_url, folder) as start:
            classes = [name for name in WORKER_CLASSES for _ in range(worker_copies)]

            def start_worker(name: str) -> Process:
                return start("arq", f"jobs.worker.{name}", **env)

            workers = [start_worker(name) for name in classes]
            web = start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=10) as http:
                await wait_until_up(http, timeout_s=30)
                yield Platform(
                    http=http,
                    mailbox=mailbox,
                    providers=providers,
                    web=web,
                    workers=workers,
                    worker_classes=classes,
                    start_worker=start_worker,
                )
