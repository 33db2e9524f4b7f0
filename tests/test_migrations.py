"""Migrations: applied once each, and safe when several processes run them at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import db.migrate
import db.pool
from tests.conftest import scratch_database


@pytest.fixture
async def empty_database_url() -> AsyncIterator[str]:
    async with scratch_database() as url:
        yield url


async def migrate(url: str) -> list[str]:
    conn = await db.pool.connect(url)
    try:
        return await db.migrate.apply_migrations(conn)
    finally:
        await conn.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    every_file = [name for name, _ in db.migrate.migration_files()]
    assert sorted(results, key=len)[-1] == every_file
    assert sum(len(r) for r in results) == len(every_file)
    assert await migrate(empty_database_url) == []
