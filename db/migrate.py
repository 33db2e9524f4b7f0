"""Applying db/migrations/*.sql once each, in order, under an advisory lock."""

from __future__ import annotations

from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

# Any constant will do, as long as only migrations use it: two `millrace migrate` at once queue on it.
MIGRATION_LOCK_ID = 0x6D696C6C72616365  # "millrace"


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("db") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


async def apply_migrations(conn: asyncpg.Connection) -> list[str]:
    """Apply what is missing and return the names applied; safe when several processes run it at once."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS millrace_migrations"
            " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM millrace_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO millrace_migrations (name) VALUES ($1)", name)
            log.info("migration_applied", migration=name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied
