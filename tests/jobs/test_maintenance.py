"""Pruning old job records: finished ones go, dead letters and recent ones stay."""

from __future__ import annotations

import datetime as dt

import queues
from millrace import Pool, store
from millrace.client import JobClient
from producers.maintenance import enqueue_prune_job_records
from settings import Settings
from tests.jobs.workers import run_app_workers


async def test_prune_removes_old_finished_records_only(
    client: JobClient, pool: Pool, database_url: str, redis_url: str
) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    await pool.execute(
        """INSERT INTO millrace_jobs (id, queue, function, status, finished_at) VALUES
           ('old-ok', 'emails', 'f', 'succeeded', $1), ('old-dead', 'emails', 'f', 'dead', $1),
           ('new-ok', 'emails', 'f', 'succeeded', now())""",
        old,
    )
    await enqueue_prune_job_records(client, older_than_days=30)
    await run_app_workers(Settings(database_url=database_url, redis_url=redis_url), queues.MAINTENANCE)
    remaining = {j.id for j in await store.jobs.list_jobs(pool, limit=100)}
    assert {"old-dead", "new-ok"} <= remaining
    assert "old-ok" not in remaining
