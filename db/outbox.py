"""The transactional outbox: jobs written inside a caller's transaction, claimed by the relay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from db.jobs import _INSERT_JOB, NewJob, find_pending_id_by_key, insert_job_args
from db.pool import Executor

#: NOTIFY channel; the payload is the queue name, so a relay wakes only for its own queues
CHANNEL = "millrace_outbox"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    job_id: str
    queue: str
    function: str
    args: dict[str, Any]
    attempt_base: int
    run_at: datetime | None
    enqueued_at: datetime


_INSERT_WITH_OUTBOX = f"""
WITH job AS ({_INSERT_JOB} RETURNING id, queue, function, args, run_at, enqueued_at),
out AS (
    INSERT INTO millrace_outbox (job_id, queue, function, args, run_at, enqueued_at)
    SELECT id, queue, function, args, run_at, enqueued_at FROM job
    RETURNING job_id, queue
)
SELECT job_id, pg_notify('{CHANNEL}', queue) FROM out
"""


async def insert_job_with_outbox(conn: Executor, job: NewJob) -> tuple[str, bool]:
    """Write the job and its outbox row in one statement, inside the caller's transaction.

    The NOTIFY is delivered at commit, and never if the transaction rolls back.
    """
    row = await conn.fetchrow(_INSERT_WITH_OUTBOX, *insert_job_args(job))
    if row is not None:
        return row["job_id"], True
    return await find_pending_id_by_key(conn, job), False


async def insert_outbox_entry(conn: Executor, job: NewJob) -> None:
    """Hand an already recorded job to the relay: its direct push to Redis failed."""
    await conn.execute(
        f"""WITH out AS (
                INSERT INTO millrace_outbox (job_id, queue, function, args, run_at, enqueued_at)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING queue)
            SELECT pg_notify('{CHANNEL}', queue) FROM out""",
        job.id,
        job.queue,
        job.function,
        job.args,
        job.run_at,
        job.enqueued_at,
    )


async def claim_entries(conn: Executor, queues: list[str] | None, limit: int) -> list[OutboxEntry]:
    """Delete and return up to `limit` entries; call inside a transaction that commits after delivery.

    SKIP LOCKED lets several relays share the table without waiting on each other.
    """
    rows = await conn.fetch(
        """DELETE FROM millrace_outbox WHERE id IN (
               SELECT id FROM millrace_outbox WHERE ($1::text[] IS NULL OR queue = ANY($1))
               ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING job_id, queue, function, args, attempt_base, run_at, enqueued_at""",
        queues,
        limit,
    )
    return [OutboxEntry(**dict(r)) for r in sorted(rows, key=lambda r: r["enqueued_at"])]


async def requeue_dead_jobs(conn: Executor, job_ids: list[str]) -> list[OutboxEntry]:
    """Give dead jobs a fresh budget and hand them to the relay; their attempt history stays."""
    rows = await conn.fetch(
        f"""WITH requeued AS (
                UPDATE millrace_jobs SET status = 'queued', attempt_base = attempts, run_at = NULL,
                       finished_at = NULL, job_key = NULL, updated_at = now()
                WHERE id = ANY($1::text[]) AND status = 'dead'
                RETURNING id, queue, function, args, attempt_base
            ), out AS (
                INSERT INTO millrace_outbox (job_id, queue, function, args, attempt_base)
                SELECT id, queue, function, args, attempt_base FROM requeued
                RETURNING job_id, queue, function, args, attempt_base, run_at, enqueued_at
            )
            SELECT out.*, pg_notify('{CHANNEL}', out.queue) FROM out""",
        job_ids,
    )
    return [OutboxEntry(**{k: v for k, v in dict(r).items() if k != "pg_notify"}) for r in rows]


async def count_entries(conn: Executor) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM millrace_outbox"))


_INSERT_MANY_WITH_OUTBOX = f"""
WITH new AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[])
        AS n(id, queue, function, args, job_key, run_at, enqueued_at)
), job AS (
    INSERT INTO millrace_jobs (id, queue, function, args, job_key, status, run_at, enqueued_at)
    SELECT id, queue, function, args, job_key,
           CASE WHEN run_at > enqueued_at THEN 'deferred' ELSE 'queued' END, run_at, enqueued_at
    FROM new
    ON CONFLICT (job_key) WHERE job_key IS NOT NULL AND status IN ('queued', 'deferred', 'retrying')
    DO NOTHING
    RETURNING id, queue, function, args, run_at, enqueued_at
), out AS (
    INSERT INTO millrace_outbox (job_id, queue, function, args, run_at, enqueued_at)
    SELECT id, queue, function, args, run_at, enqueued_at FROM job
    RETURNING queue
)
SELECT queue, count(*) AS n, pg_notify('{CHANNEL}', queue) FROM out GROUP BY queue
"""


async def insert_jobs_with_outbox(conn: Executor, jobs: Sequence[NewJob]) -> int:
    """Many jobs in one statement, inside the caller's transaction; returns how many were new."""
    rows = await conn.fetch(
        _INSERT_MANY_WITH_OUTBOX,
        [j.id for j in jobs],
        [j.queue for j in jobs],
        [j.function for j in jobs],
        [j.args for j in jobs],
        [j.job_key for j in jobs],
        [j.run_at for j in jobs],
        [j.enqueued_at for j in jobs],
    )
    return sum(int(r["n"]) for r in rows)
