"""Migrations: applied once each, and safe when several processes run them at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import db
from millrace import store
from tests.conftest import scratch_database
from tests.sample import app


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    async with scratch_database() as url:
        yield url


SERIES = [db.MIGRATIONS, app.MIGRATIONS]


async def migrate(url: str) -> list[str]:
    conn = await store.pool.connect(url)
    try:
        return await store.migrate.apply_migrations(conn, SERIES)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    every_file = [
        f"{series.name}/{name}" for series in (store.migrate.RUNTIME_MIGRATIONS, *SERIES) for name, _ in series.files()
    ]
    assert sorted(results, key=len)[-1] == every_file
    assert sum(len(r) for r in results) == len(every_file)
    assert await migrate(empty_database_url) == []
