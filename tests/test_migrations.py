"""Migrations: applied once each, and safe when several processes run them at once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

import db
from millrace import PENDING_STATUSES, Pool, store
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


async def test_a_database_migrated_before_series_existed_migrates_forward_without_loss(
    empty_database_url: str,
) -> None:
    """The one-ledger scheme of the first release: file names only, runtime and application mixed."""
    conn = await store.pool.connect(empty_database_url)
    try:
        await conn.execute("CREATE TABLE millrace_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL)")
        legacy = [*store.migrate.RUNTIME_MIGRATIONS.files(), *db.MIGRATIONS.files()[:2]]
        assert [name for name, _ in legacy][-1] == "0005_event_flows.sql", "the files of the first release"
        for name, sql in legacy:
            await conn.execute(sql)
            await conn.execute("INSERT INTO millrace_migrations VALUES ($1, now())", name)
        await conn.execute("INSERT INTO users (email, name) VALUES ('ada@example.com', 'Ada')")
        await conn.execute(
            "INSERT INTO millrace_jobs (id, queue, function, status) VALUES ('j1', 'emails', 'f', 'dead')"
        )
    finally:
        await conn.close()
    applied = await migrate(empty_database_url)
    assert applied == [f"app/{name}" for name, _ in db.MIGRATIONS.files()[2:]] + [
        f"sample/{name}" for name, _ in app.MIGRATIONS.files()
    ]
    conn = await store.pool.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT name FROM users") == "Ada"
        assert await conn.fetchval("SELECT status FROM millrace_jobs WHERE id = 'j1'") == "dead"
    finally:
        await conn.close()


async def test_emails_differing_only_by_case_stop_the_migration_that_makes_them_unique(
    empty_database_url: str,
) -> None:
    """The migration names the clashing addresses and changes nothing; a person merges them first."""
    conn = await store.pool.connect(empty_database_url)
    try:
        await store.migrate.apply_migrations(conn)  # the runtime's series only
        for name, sql in [(name, sql) for name, sql in db.MIGRATIONS.files() if name < "0006"]:
            await conn.execute(sql)
            await conn.execute("INSERT INTO millrace_schema_migrations (series, name) VALUES ('app', $1)", name)
        await conn.execute("INSERT INTO users (email, name) VALUES ('Ada@example.com', 'A'), ('ada@EXAMPLE.com', 'B')")
        with pytest.raises(
            asyncpg.RaiseError, match=re.escape("differ only by the case of their email: ada@example.com;")
        ):
            await store.migrate.apply_migrations(conn, [db.MIGRATIONS])
        assert await conn.fetchval("SELECT to_regclass('api_tokens')") is None
        await conn.execute("DELETE FROM users WHERE name = 'B'")
        assert "app/0006_api_tokens_and_email_case.sql" in await store.migrate.apply_migrations(conn, [db.MIGRATIONS])
    finally:
        await conn.close()


async def test_the_pending_rule_matches_the_job_key_index(pool: Pool) -> None:
    """ON CONFLICT names the index by its predicate: the Python rule and the index must say the same."""
    definition = await pool.fetchval("SELECT pg_get_indexdef('millrace_jobs_pending_key'::regclass)")
    predicate = await pool.fetchval(
        "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = 'millrace_jobs_pending_key'::regclass"
    )
    assert "job_key IS NOT NULL" in definition
    assert set(re.findall(r"'(\w+)'", predicate)) == set(PENDING_STATUSES)
