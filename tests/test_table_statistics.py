"""The runtime analyses its own tables: a drain over a history nobody analysed reads none of it whole, and a
plan cached while a table was small goes once the table has grown (store.statistics)."""

from __future__ import annotations

import asyncio

import asyncpg

import db
from millrace import store
from millrace.analyser import TableAnalyser
from millrace.recorder import RecordWriter
from millrace.records import Claimed
from millrace.store.pool import Pool
from tests.sample import app
from tests.test_keyed_plans import once_flushed, request, succeeded

HISTORY_JOBS = 100_000
#: a claim of this many jobs a statement planned a read of the whole attempts table without statistics
CLAIM_BATCH = 20


async def load_unanalysed_history(database_url: str, jobs: int) -> None:
    """`jobs` finished jobs of history, inserted in bulk, with autovacuum off for the runtime's tables."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch("SELECT oid::regclass::text AS name FROM pg_class WHERE relname LIKE 'millrace\\_%'")
        for table in tables:
            if await conn.fetchval("SELECT relkind = 'r' FROM pg_class WHERE oid = $1::regclass", table["name"]):
                await conn.execute(f"ALTER TABLE {table['name']} SET (autovacuum_enabled = false)")
        await conn.execute(
            """INSERT INTO millrace_jobs (id, queue, function, status, attempts, counted_attempts, lease, worker,
                                          started_at, finished_at, enqueued_at)
               SELECT 'history-' || n, 'testq', 'f', 'succeeded', 1, 1, 1, 'w0', now(), now(), now()
               FROM generate_series(1, $1) n""",
            jobs,
        )
        await conn.execute(
            """INSERT INTO millrace_job_attempts (job_id, attempt, worker, started_at, finished_at, duration_ms,
                                                  outcome)
               SELECT 'history-' || n, 1, 'w0', now(), now(), 1.0, 'succeeded' FROM generate_series(1, $1) n""",
            jobs,
        )
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'millrace_job_attempts'") < 0
    finally:
        await conn.close()


async def rows_read_whole(database_url: str) -> int:
    """Rows read by sequential scans of the runtime's tables, as far as the ended backends reported them."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables WHERE relname LIKE 'millrace\\_%'"
            )
        )
    finally:
        await conn.close()


async def claim_and_finish(pool: Pool, first: int, jobs: int) -> None:
    """Claims and finishes of CLAIM_BATCH jobs a statement, through the record writer."""
    writer = RecordWriter(pool)
    writer.start()
    for start in range(first, first + jobs, CLAIM_BATCH):
        ids = [f"job-{n}" for n in range(start, start + CLAIM_BATCH)]
        claims = await asyncio.gather(*(writer.claim(request(job_id)) for job_id in ids))
        finishes = [succeeded(job_id, c) for job_id, c in zip(ids, claims, strict=True) if isinstance(c, Claimed)]
        assert all(await asyncio.gather(*(writer.finish(f) for f in finishes)))
    await writer.close()


async def drain_as_a_worker(database_url: str, first: int, jobs: int) -> None:
    """A worker's start (its first analyser pass) then a drain, on a pool of plain connections: the main
    pool's, where the record writer's statements get what statistics give them, no more."""
    pool = await store.pool.create_pool(database_url, max_size=2)
    analyser = TableAnalyser(pool)
    try:
        await analyser.start()
        await claim_and_finish(pool, first, jobs)
    finally:
        await analyser.close()
        await pool.close()


async def test_a_drain_over_a_history_nobody_analysed_reads_none_of_it_whole(database_url: str) -> None:
    """3,000 jobs over 100,000 of history, then again from a restarted worker: no sequential read of the
    runtime's tables (without the analyser's pass: 15 million rows a drain, the whole history at every claim)."""
    await load_unanalysed_history(database_url, HISTORY_JOBS)
    before = await rows_read_whole(database_url)
    for restart, first in enumerate([0, 3000]):
        await drain_as_a_worker(database_url, first, 3000)
        await once_flushed(database_url, "millrace_job_attempts", "n_tup_ins", HISTORY_JOBS + 3000 * (restart + 1))
        assert await rows_read_whole(database_url) == before


async def test_an_analyse_replaces_the_plan_a_connection_cached_while_the_table_was_small(database_url: str) -> None:
    """asyncpg's prepared claim on one connection, its generic plan made on empty tables, reads none of the
    history loaded since once the analyser has passed (without the pass: all of it, at every claim)."""
    generic = await store.pool.create_pool(
        database_url, max_size=1, server_settings={"plan_cache_mode": "force_generic_plan"}
    )
    try:
        await claim_and_finish(generic, 0, 10 * CLAIM_BATCH)
        await generic.execute("SELECT pg_stat_force_next_flush()")  # its counters, without ending its session
        await load_unanalysed_history(database_url, HISTORY_JOBS)
        other = await store.pool.create_pool(database_url, max_size=1)
        try:
            assert "millrace_job_attempts" in await TableAnalyser(other).run_once()
        finally:
            await other.close()
        await once_flushed(database_url, "millrace_job_attempts", "n_tup_ins", HISTORY_JOBS + 10 * CLAIM_BATCH)
        before = await rows_read_whole(database_url)
        await claim_and_finish(generic, 10 * CLAIM_BATCH, 50 * CLAIM_BATCH)
    finally:
        await generic.close()
    await once_flushed(database_url, "millrace_job_attempts", "n_tup_ins", HISTORY_JOBS + 60 * CLAIM_BATCH)
    assert await rows_read_whole(database_url) == before


async def test_migrating_analyses_a_history_nobody_analysed(database_url: str) -> None:
    await load_unanalysed_history(database_url, 20_000)
    conn = await store.pool.connect(database_url)
    try:
        assert await store.migrate.apply_migrations(conn, [db.MIGRATIONS, app.MIGRATIONS]) == []
        assert await conn.fetchval("SELECT reltuples FROM pg_class WHERE relname = 'millrace_job_attempts'") == 20_000
        # analysed until it doubles: nothing more to do now
        assert await store.statistics.analyse_grown_tables(conn) == []
    finally:
        await conn.close()
