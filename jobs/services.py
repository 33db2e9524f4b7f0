"""The resources every job of this application may use, opened once per worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import jinja2

from jobs.mail import EmailBackend, backend_from
from jobs.ssrf import guarded_client
from millrace import JobClient, Pool
from millrace.storage import DownloadLinks, Storage, open_storage
from settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    db: Pool
    #: for follow-up jobs, enqueued in the job's own transaction
    jobs: JobClient
    #: for the providers this deployment configured
    http: httpx.AsyncClient
    #: for URLs users supply (Slack webhooks): public addresses only, checked at connection time
    user_http: httpx.AsyncClient
    mailer: EmailBackend
    templates: jinja2.Environment
    #: uploads, exports and rendered documents
    storage: Storage
    #: signed download links for the files jobs send to users; None when no secret is configured
    links: DownloadLinks | None


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("jobs", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, not an empty hole in an email
    )


@asynccontextmanager
async def open_services(settings: Settings, jobs: JobClient) -> AsyncIterator[Services]:
    # explicit timeouts: a provider that hangs must fail the attempt, not hold the worker slot forever
    timeout = httpx.Timeout(settings.http_timeout_s, connect=min(settings.http_timeout_s, 5.0))
    user_http = guarded_client(timeout=timeout, allowed_hosts=settings.outbound_allowed_hosts)
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
        user_http,
        open_storage(settings.storage_location()) as storage,
    ):
        yield Services(
            settings=settings,
            db=jobs.pool,
            jobs=jobs,
            http=http,
            user_http=user_http,
            mailer=backend_from(settings, http),
            templates=template_environment(),
            storage=storage,
            links=settings.download_links(),
        )
