"""The demo web app in process (its real lifespan, PostgreSQL and Redis), driven over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import argon2
import httpx
import pytest

from settings import Settings
from web.app import create_app

OPERATOR_PASSWORD = "correct horse battery staple"
OPERATOR_HASH = argon2.PasswordHasher().hash(OPERATOR_PASSWORD)
WEBHOOK_SECRET = "whsec_in_process"


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client


@pytest.fixture
async def http(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        operator_password_hash=OPERATOR_HASH,
        webhook_secrets={"stripe": [WEBHOOK_SECRET]},
        storage_folder=tmp_path / "files",  # never the project's var/
    )
    async with serving(settings) as client:
        yield client
