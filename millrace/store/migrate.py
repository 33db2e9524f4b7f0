"""Applying migration series (the runtime's own, then each application's) once each, in order, under a lock.

Each series is a folder of `NNNN_name.sql` files in a package; the ledger tracks the series apart, so
an application numbers its migrations as it likes and the runtime's never collide with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import structlog

from millrace.store import statistics
from millrace.store.pool import Connection

log = structlog.get_logger(__name__)

# Any constant will do, as long as only migrations use it: two `migrate` runs at once queue on it.
MIGRATION_LOCK_ID = 0x6D696C6C72616365  # "millrace"


@dataclass(frozen=True, slots=True)
class MigrationSeries:
    """A named series of SQL migrations: `package`/`folder`/NNNN_name.sql, applied in name order."""

    name: str
    package: str
    folder: str = "migrations"

    def files(self) -> list[tuple[str, str]]:
        folder = resources.files(self.package) / self.folder
        names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
        return [(name, (folder / name).read_text(encoding="utf-8")) for name in names]


#: the runtime's own tables: always applied first, whatever the application's series are
RUNTIME_MIGRATIONS = MigrationSeries("millrace", "millrace.store")

_LEDGER = """CREATE TABLE IF NOT EXISTS millrace_schema_migrations (
    series     text NOT NULL,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series, name))"""

# Databases migrated before series existed kept one ledger of file names; a series adopts its own.
_ADOPT_LEGACY = """INSERT INTO millrace_schema_migrations (series, name, applied_at)
    SELECT $1, name, applied_at FROM millrace_migrations WHERE name = ANY($2::text[])
    ON CONFLICT DO NOTHING"""


async def apply_migrations(conn: Connection, series: Sequence[MigrationSeries] = ()) -> list[str]:
    """Apply what is missing of the runtime's series, then of `series`; returns `series/name` of each applied.

    Safe when several processes run it at once: they queue on an advisory lock. Ends by analysing the
    runtime's tables that have no statistics yet or have grown (store.statistics): a database upgraded
    or restored with autovacuum off would otherwise have its history read whole by every claim. The one
    place where the runtime lifts its statement bound: a migration may rewrite a big table, and the
    others wait for it.
    """
    applied: list[str] = []
    await conn.execute("SET statement_timeout = 0")
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(_LEDGER)
        legacy = await conn.fetchval("SELECT to_regclass('millrace_migrations') IS NOT NULL")
        for one in (RUNTIME_MIGRATIONS, *series):
            applied += await _apply_series(conn, one, adopt_legacy=bool(legacy))
        analysed = await statistics.analyse_grown_tables(conn)
        if analysed:
            log.info("tables_analysed", tables=analysed)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        await conn.execute("RESET statement_timeout")  # back to the bound the connection was opened with
    return applied


async def _apply_series(conn: Connection, series: MigrationSeries, *, adopt_legacy: bool) -> list[str]:
    files = series.files()
    if adopt_legacy:
        await conn.execute(_ADOPT_LEGACY, series.name, [name for name, _ in files])
    rows = await conn.fetch("SELECT name FROM millrace_schema_migrations WHERE series = $1", series.name)
    done = {r["name"] for r in rows}
    applied: list[str] = []
    for name, sql in files:
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO millrace_schema_migrations (series, name) VALUES ($1, $2)", series.name, name
            )
        log.info("migration_applied", series=series.name, migration=name)
        applied.append(f"{series.name}/{name}")
    return applied
