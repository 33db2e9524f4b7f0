"""Job records and their attempts (one table group): what the runtime writes, what its operations read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from millrace.errors import NotFound
from millrace.records import (
    PENDING_STATUSES,
    AttemptRecord,
    JobRecord,
    NewJob,
    OutboxEntry,
    Progress,
    QueueStatus,
)
from millrace.store.pool import Executor
from millrace.text import storable_text

#: the pending rule in SQL, from the one list of pending statuses; the key index's predicate must match it
PENDING_SQL = "status IN (" + ", ".join(f"'{s}'" for s in PENDING_STATUSES) + ")"

#: new jobs as rows named `new`, from `new_job_columns()` as $1..$10
NEW_JOBS = """new AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[], $8::text[], $9::jsonb[], $10::int[])
        AS n(id, queue, function, args, job_key, run_at, enqueued_at, group_id, trace_context, priority))"""

#: insert the rows of `new`, none whose job key a pending job holds; returns what an outbox row needs
INSERT_NEW_JOBS = f"""
    INSERT INTO millrace_jobs (id, queue, function, args, job_key, status, run_at, enqueued_at, group_id,
                               trace_context, priority)
    SELECT id, queue, function, args, job_key,
           CASE WHEN run_at > enqueued_at THEN 'deferred' ELSE 'queued' END, run_at, enqueued_at, group_id,
           trace_context, priority
    FROM new
    ON CONFLICT (job_key) WHERE job_key IS NOT NULL AND {PENDING_SQL} DO NOTHING
    RETURNING id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context, priority"""


def new_job_columns(jobs: Sequence[NewJob]) -> list[list[Any]]:
    return [
        [j.id for j in jobs],
        [j.queue for j in jobs],
        [j.function for j in jobs],
        [j.args for j in jobs],
        [j.job_key for j in jobs],
        [j.run_at for j in jobs],
        [j.enqueued_at for j in jobs],
        [j.group_id for j in jobs],
        [j.trace_context for j in jobs],
        [j.priority for j in jobs],
    ]


JOB_COLUMNS = """id, queue, function, args, job_key, status, attempts, counted_attempts, attempt_base, run_at,
    enqueued_at, started_at, finished_at, worker, last_error_type, last_error,
    progress_done, progress_total, progress_message, progress_at,
    substring(trace_context->>'traceparent' FROM '^[0-9a-f]{2}-([0-9a-f]{32})-') AS trace_id, last_fingerprint,
    abort_requested_at"""


def job_from_row(row: asyncpg.Record | dict[str, Any]) -> JobRecord:
    columns = dict(row)
    done, total, message, at = (columns.pop(f"progress_{part}") for part in ("done", "total", "message", "at"))
    progress = None if at is None else Progress(done=done, total=total, message=message, at=at)
    return JobRecord(**columns, progress=progress)


async def find_job(conn: Executor, job_id: str) -> JobRecord | None:
    row = await conn.fetchrow(f"SELECT {JOB_COLUMNS} FROM millrace_jobs WHERE id = $1", job_id)
    return None if row is None else job_from_row(row)


async def get_job(conn: Executor, job_id: str) -> JobRecord:
    job = await find_job(conn, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


async def list_jobs(
    conn: Executor,
    *,
    status: str | None = None,
    queue: str | None = None,
    function: str | None = None,
    error_type: str | None = None,
    limit: int = 50,
) -> list[JobRecord]:
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM millrace_jobs
            WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR queue = $2)
              AND ($3::text IS NULL OR function = $3) AND ($4::text IS NULL OR last_error_type = $4)
            ORDER BY enqueued_at DESC, id LIMIT $5""",
        status,
        queue,
        function,
        error_type,
        limit,
    )
    return [job_from_row(r) for r in rows]


async def list_attempts(conn: Executor, job_id: str) -> list[AttemptRecord]:
    rows = await conn.fetch(
        """SELECT job_id, attempt, worker, started_at, finished_at, duration_ms, outcome,
                  error_type, error_message, traceback
           FROM millrace_job_attempts WHERE job_id = $1 ORDER BY attempt""",
        job_id,
    )
    return [AttemptRecord(**dict(r)) for r in rows]


async def queue_statuses(conn: Executor) -> list[QueueStatus]:
    """Counts by status per queue, and how long the oldest job due to run has been waiting."""
    rows = await conn.fetch(
        f"""SELECT queue, status, count(*) AS n,
                  extract(epoch FROM now() - min(coalesce(run_at, enqueued_at))
                      FILTER (WHERE {PENDING_SQL}
                              AND coalesce(run_at, enqueued_at) <= now())) AS oldest_s
           FROM millrace_jobs GROUP BY queue, status ORDER BY queue"""
    )
    by_queue: dict[str, QueueStatus] = {}
    for row in rows:
        entry = by_queue.setdefault(row["queue"], QueueStatus(queue=row["queue"], counts={}, oldest_waiting_s=None))
        entry.counts[row["status"]] = row["n"]
        if row["oldest_s"] is not None:
            oldest = max(float(row["oldest_s"]), entry.oldest_waiting_s or 0.0)
            by_queue[row["queue"]] = QueueStatus(queue=entry.queue, counts=entry.counts, oldest_waiting_s=oldest)
    return list(by_queue.values())


async def delete_finished_before(conn: Executor, cutoff: datetime, *, batch: int = 5000) -> int:
    """Delete up to `batch` succeeded or cancelled records finished before `cutoff`; dead letters stay."""
    deleted = await conn.fetchval(
        """WITH gone AS (
               DELETE FROM millrace_jobs WHERE id IN (
                   SELECT id FROM millrace_jobs
                   WHERE status IN ('succeeded', 'cancelled') AND finished_at < $1 LIMIT $2)
               RETURNING 1)
           SELECT count(*) FROM gone""",
        cutoff,
        batch,
    )
    return int(deleted)


async def mark_cancelled(conn: Executor, job_id: str) -> JobRecord | None:
    """Cancel a job that has not started (or waits for a retry); None if it is not pending.

    Call inside a transaction that commits only once the job is also out of Redis and the outbox.
    """
    row = await conn.fetchrow(
        f"""UPDATE millrace_jobs SET status = 'cancelled', finished_at = now(), run_at = NULL, updated_at = now()
            WHERE id = $1 AND {PENDING_SQL} RETURNING {JOB_COLUMNS}""",
        job_id,
    )
    return None if row is None else job_from_row(row)


async def request_abort(conn: Executor, job_id: str) -> bool:
    """Ask the worker that runs the job to abort it (it hears at its next heartbeat); False when the job
    is not running. The job ends `cancelled`, whatever its worker does next: the body is cancelled, and a
    failure, a hand-back or the worker's death meanwhile ends it too."""
    row = await conn.fetchrow(
        """UPDATE millrace_jobs SET abort_requested_at = coalesce(abort_requested_at, now()), updated_at = now()
           WHERE id = $1 AND status = 'in_progress' RETURNING id""",
        job_id,
    )
    return row is not None


async def mark_dead_requeued(conn: Executor, job_ids: Sequence[str]) -> list[OutboxEntry]:
    """Give dead jobs a fresh budget of attempts; their attempt history stays. Returns what to deliver."""
    rows = await conn.fetch(
        """UPDATE millrace_jobs SET status = 'queued', attempt_base = attempts, counted_attempts = 0, run_at = NULL,
                  finished_at = NULL, job_key = NULL, abort_requested_at = NULL, updated_at = now()
           WHERE id = ANY($1::text[]) AND status = 'dead'
           RETURNING id AS job_id, queue, function, args, attempt_base, run_at, now() AS enqueued_at, trace_context,
                     priority""",
        list(job_ids),
    )
    return [OutboxEntry(**dict(r)) for r in rows]


async def insert_jobs(conn: Executor, jobs: Sequence[NewJob]) -> set[str]:
    """Insert queued jobs; returns the ids created (a job whose key a pending job holds is not)."""
    rows = await conn.fetch(f"WITH {NEW_JOBS} {INSERT_NEW_JOBS}", *new_job_columns(jobs))
    return {r["id"] for r in rows}


async def find_pending_id(conn: Executor, job_key: str) -> str | None:
    """The pending job that holds `job_key`, if one does."""
    found: str | None = await conn.fetchval(
        f"SELECT id FROM millrace_jobs WHERE job_key = $1 AND {PENDING_SQL}", job_key
    )
    return found


async def mark_dropped(conn: Executor, *, job_id: str, queue: str, function: str, reason: str) -> bool:
    """arq finished a job without running it (past its try limit, planted by hand): its record ends dead.

    The record is created if there was none (a job planted in Redis by hand); only a pending record is
    changed: one in progress belongs to the worker that runs it, a final one stays final. True if marked.
    """
    marked = await conn.fetchval(
        f"""WITH j AS (
               INSERT INTO millrace_jobs AS j (id, queue, function, status, attempts, counted_attempts, finished_at,
                                               last_error_type, last_error)
               VALUES ($1, $2, $3, 'dead', 1, 1, now(), 'JobDropped', $4)
               ON CONFLICT (id) DO UPDATE SET status = 'dead', attempts = j.attempts + 1,
                   counted_attempts = j.counted_attempts + 1, lease = j.lease + 1, finished_at = now(), run_at = NULL,
                   last_error_type = 'JobDropped', last_error = EXCLUDED.last_error, updated_at = now()
               WHERE j.{PENDING_SQL}
               RETURNING id, attempts),
           a AS (
               INSERT INTO millrace_job_attempts (job_id, attempt, finished_at, outcome, error_type, error_message)
               SELECT id, attempts, now(), 'dead', 'JobDropped', $4 FROM j)
           SELECT count(*) > 0 FROM j""",
        job_id,
        queue,
        function,
        storable_text(reason, 4000),
    )
    return bool(marked)


_PENDING_ENTRY = "id AS job_id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context, priority"


async def list_pending_quiet_since(
    conn: Executor, queue: str, *, quiet_for: timedelta, after_id: str, limit: int
) -> list[OutboxEntry]:
    """One keyset page of a queue's pending jobs unchanged for `quiet_for` (by PostgreSQL's clock, which
    wrote `updated_at`), as the relay would deliver them.

    Cron runs are left out: their ticks come round again, and arq names their functions itself.
    """
    rows = await conn.fetch(
        f"""SELECT {_PENDING_ENTRY} FROM millrace_jobs
            WHERE queue = $1 AND {PENDING_SQL} AND updated_at < now() - $2::interval AND id > $3
              AND id NOT LIKE 'cron:%'
            ORDER BY id LIMIT $4""",
        queue,
        quiet_for,
        after_id,
        limit,
    )
    return [OutboxEntry(**dict(r)) for r in rows]


async def list_still_pending(conn: Executor, job_ids: Sequence[str]) -> list[OutboxEntry]:
    rows = await conn.fetch(
        f"SELECT {_PENDING_ENTRY} FROM millrace_jobs WHERE id = ANY($1::text[]) AND {PENDING_SQL} ORDER BY id",
        list(job_ids),
    )
    return [OutboxEntry(**dict(r)) for r in rows]
