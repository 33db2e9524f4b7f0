"""The worker's busiest statements (claims, finishes, heartbeats, progress) find their rows by key, whatever
plan PostgreSQL cached for them while its tables were small: asyncpg prepares a statement once per
connection, and the generic plan PostgreSQL keeps for it was made with the tables' size of that moment."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from millrace import JobClient, NoArgs, Pool, store
from millrace.client import new_job
from millrace.liveness import Liveness
from millrace.progress import ProgressWriter
from millrace.recorder import RecordWriter
from millrace.records import AttemptFinished, Claimed, ClaimRequest
from tests.sample import app


def request(job_id: str) -> ClaimRequest:
    return ClaimRequest(job_id=job_id, queue="testq", function="f", args={}, enqueued_at=datetime.now(UTC), worker="w1")


def succeeded(job_id: str, claim: Claimed) -> AttemptFinished:
    return AttemptFinished(
        job_id=job_id,
        attempt=claim.attempt,
        lease=claim.lease,
        outcome="succeeded",
        status="succeeded",
        finished_at=datetime.now(UTC),
        duration_ms=1.0,
    )


async def table_counters(database_url: str, table: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT n_tup_ins, n_tup_upd, seq_tup_read FROM pg_stat_user_tables WHERE relname = $1", table
        )
    finally:
        await conn.close()
    assert row is not None
    return row


async def once_flushed(database_url: str, table: str, column: str, at_least: int) -> None:
    """Wait until a backend that ended has handed over its statistics (it does so as it exits)."""
    for _ in range(100):
        if (await table_counters(database_url, table))[column] >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{table}.{column} never reached {at_least}")


async def run_jobs(database_url: str, jobs: int) -> None:
    """Claim and finish `jobs` jobs, a hundred a statement, on a pool closed afterwards."""
    pool = await store.pool.create_pool(database_url, max_size=1)
    try:
        for start in range(0, jobs, 100):
            ids = [f"history-{n}" for n in range(start, start + 100)]
            claims = await store.attempts.claim(pool, [request(job_id) for job_id in ids])
            await store.attempts.finish(pool, [succeeded(job_id, claim) for job_id, claim in claims.items()])
    finally:
        await pool.close()


async def test_the_record_writer_never_scans_the_attempts_table(pool: Pool, database_url: str) -> None:
    """With the table empty at the first claim, 300 jobs one by one read none of it (without the setting:
    about 90,000 rows, each claim and finish reading the whole table)."""
    await store.workers.register(pool, a_worker_row())
    keyed = await store.pool.create_pool(database_url, max_size=1, server_settings=store.pool.KEYED_STATEMENTS_ONLY)
    writer = RecordWriter(keyed)
    writer.start()
    for n in range(300):
        claim = await writer.claim(request(f"job-{n}"))
        assert isinstance(claim, Claimed)
        assert await writer.finish(succeeded(f"job-{n}", claim))
    await writer.close()
    await keyed.close()
    await once_flushed(database_url, "millrace_job_attempts", "n_tup_ins", 300)
    assert (await table_counters(database_url, "millrace_job_attempts"))["seq_tup_read"] == 0


async def test_the_heartbeat_never_scans_the_attempts_table(client: JobClient, database_url: str) -> None:
    """A worker that started on an empty table goes on beating and reaping as it fills: no beat reads it
    whole (without the setting: three reads of the whole table at every beat)."""
    liveness = Liveness(
        dsn=database_url,
        redis=client.redis,
        worker_id="w1",
        queue=app.TESTQ.name,
        heartbeat_interval_s=60,  # beaten by hand below
        silent_after_s=0.01,  # it judges the others, and reaps, from its second beat
        running=lambda: ["a-job-of-its-own"],
        jobs_done=lambda: 0,
        in_progress_timeout_s=300,
        claim_patience_s=3,
    )
    for _ in range(10):  # past the five runs after which PostgreSQL keeps a generic plan
        await liveness.beat_once()
        await asyncio.sleep(0.02)
    await run_jobs(database_url, 2000)
    await once_flushed(database_url, "millrace_job_attempts", "n_tup_ins", 2000)
    before = await table_counters(database_url, "millrace_job_attempts")
    beats_before = (await table_counters(database_url, "millrace_workers"))["n_tup_upd"]
    for _ in range(10):
        await liveness.beat_once()
    await liveness.close()
    await once_flushed(database_url, "millrace_workers", "n_tup_upd", beats_before + 10)
    after = await table_counters(database_url, "millrace_job_attempts")
    assert after["seq_tup_read"] == before["seq_tup_read"]


async def test_the_progress_writer_never_scans_the_jobs_table(database_url: str) -> None:
    """Progress written first on an empty table, then after 5,000 jobs were enqueued: none of it read whole."""
    keyed = await store.pool.create_pool(database_url, max_size=1, server_settings=store.pool.KEYED_STATEMENTS_ONLY)
    progress = ProgressWriter(keyed)
    for n in range(10):  # past the five runs after which PostgreSQL keeps a generic plan
        progress.note(f"job-{n}", 1, done=n, total=10, message=None)
        await progress.flush()
    loader = await store.pool.create_pool(database_url, max_size=1)
    jobs = [new_job(app.NOOP, NoArgs()) for _ in range(5000)]
    for start in range(0, len(jobs), 500):
        await store.jobs.insert_jobs(loader, jobs[start : start + 500])
    await loader.close()
    await once_flushed(database_url, "millrace_jobs", "n_tup_ins", 5000)
    before = await table_counters(database_url, "millrace_jobs")
    for n, job in enumerate(jobs[:10]):
        progress.note(job.id, 0, done=n, total=10, message=None)
        await progress.flush()
    assert progress.writes == 20
    await keyed.close()
    await once_flushed(database_url, "millrace_jobs", "n_tup_upd", before["n_tup_upd"] + 10)
    assert (await table_counters(database_url, "millrace_jobs"))["seq_tup_read"] == before["seq_tup_read"]


def a_worker_row() -> store.workers.WorkerRow:
    return store.workers.WorkerRow(
        id="w1",
        queue="testq",
        host="h",
        pid=1,
        version="t",
        lock_key=1,
        heartbeat_interval_s=2,
        silent_after_s=10,
    )
