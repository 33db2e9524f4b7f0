"""The planner's statistics of the runtime's tables, kept current by the runtime itself: ANALYZE of each
table that has none yet, or has grown since its last one.

Why the runtime does it, rather than leave it to autovacuum: without statistics PostgreSQL assumes that a
job id matches 1/200 of millrace_job_attempts, so the claim's `lost` step (attempts of the claimed jobs
still open) plans a read of the whole table as soon as a claim holds about ten jobs: over 100,000 jobs of
history a drain of 3,000 read 15 million rows (tests/test_table_statistics.py). A server with autovacuum
off, a new install, a bulk load or a restore has no statistics until someone runs ANALYZE. The statements
cannot be shaped out of it: whatever the shape, a scan stays a plan PostgreSQL may choose, and without
statistics its estimates of an index path are the guesses that chose the scan. One ANALYZE gives it the
real number of distinct job ids, a fraction of the rows, which stays true as the table grows.

And as it grows: asyncpg prepares each statement once per connection, and PostgreSQL may keep a generic
plan made with the tables' size of that moment (a scan of what was a small table). Nothing replans it
until the table's statistics change: an ANALYZE invalidates every cached plan that reads the table. So a
table is analysed again each time it has grown GROWTH_FACTOR-fold since the size its last ANALYZE (or
VACUUM) recorded: a few times over a table's life, each one reading a sample of at most 30,000 rows.
"""

from __future__ import annotations

from millrace.store.pool import Connection

#: a table smaller than this (128 kB with 8 kB pages) is read whole in a few microseconds: not worth it
MIN_PAGES = 16
#: analysed again once it is this many times the size its last ANALYZE or VACUUM recorded
GROWTH_FACTOR = 2.0
#: one process analyses at a time; the others skip their turn (transaction-scoped)
ANALYSE_LOCK_ID = 0x6D696C6C61797A65  # "millayze"

# pg_class.relpages is the size the last ANALYZE or VACUUM recorded (0 if none ran: then any table past
# MIN_PAGES qualifies); pg_relation_size is the size now, read from the file system, statistics or not
_GROWN_TABLES = """
SELECT c.oid::regclass::text AS name
FROM pg_class c
WHERE c.relkind = 'r' AND c.relname LIKE 'millrace\\_%' AND pg_table_is_visible(c.oid)
  -- only the tables this role may analyse: for another's, ANALYZE only warns, and would be tried for ever
  AND pg_has_role(c.relowner, 'USAGE')
  AND pg_relation_size(c.oid) / current_setting('block_size')::int >= greatest($1::int, $2::float8 * c.relpages)
ORDER BY c.relname
"""


async def analyse_grown_tables(
    conn: Connection, *, min_pages: int = MIN_PAGES, growth_factor: float = GROWTH_FACTOR
) -> list[str]:
    """ANALYZE the runtime's tables that have no statistics yet or have grown `growth_factor`-fold since
    their last; returns their names. Skips its turn while another process analyses (an empty list).

    Tables this role does not own are left to their owner. A table another ANALYZE or VACUUM holds is
    skipped (SKIP_LOCKED): autovacuum is doing the work. Unbounded by the pool's statement timeout: a big
    table on a slow disk may take longer, and an ANALYZE cut short would be started again and again.
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ANALYSE_LOCK_ID):
            return []
        await conn.execute("SET LOCAL statement_timeout = 0")
        names: list[str] = [r["name"] for r in await conn.fetch(_GROWN_TABLES, min_pages, growth_factor)]
        if names:
            # the names come from the catalog, quoted by regclass: no input of anyone's
            await conn.execute(f"ANALYZE (SKIP_LOCKED) {', '.join(names)}")
    return names
