"""The resources every job of this application may use, opened once per worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import jinja2

from db.pool import Pool
from jobs.mail import EmailBackend, backend_from
from settings import Settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    settings: Settings
    db: Pool
    mailer: EmailBackend
    templates: jinja2.Environment


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("jobs", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a missing variable is an error, not an empty hole in an email
        enable_async=True,
    )


@asynccontextmanager
async def open_services(settings: Settings, pool: Pool) -> AsyncIterator[Services]:
    yield Services(settings=settings, db=pool, mailer=backend_from(settings), templates=template_environment())
