"""Job records and their attempts (one table group): what the runtime writes, what its operations read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from millrace.errors import NotFound
from millrace.records import (
    PENDING_STATUSES,
    AttemptFinished,
    AttemptRecord,
    AttemptStarted,
    JobRecord,
    NewJob,
    OutboxEntry,
    QueueStatus,
)
from millrace.store.pool import Connection, Executor

#: the pending rule in SQL, from the one list of pending statuses; the key index's predicate must match it
PENDING_SQL = "status IN (" + ", ".join(f"'{s}'" for s in PENDING_STATUSES) + ")"

#: new jobs as rows named `new`, from `new_job_columns()` as $1..$7
NEW_JOBS = """new AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[],
                         $7::timestamptz[])
        AS n(id, queue, function, args, job_key, run_at, enqueued_at))"""

#: insert the rows of `new`, none whose job key a pending job holds; returns what an outbox row needs
INSERT_NEW_JOBS = f"""
    INSERT INTO millrace_jobs (id, queue, function, args, job_key, status, run_at, enqueued_at)
    SELECT id, queue, function, args, job_key,
           CASE WHEN run_at > enqueued_at THEN 'deferred' ELSE 'queued' END, run_at, enqueued_at
    FROM new
    ON CONFLICT (job_key) WHERE job_key IS NOT NULL AND {PENDING_SQL} DO NOTHING
    RETURNING id, queue, function, args, attempt_base, run_at, enqueued_at"""


def new_job_columns(jobs: Sequence[NewJob]) -> list[list[Any]]:
    return [
        [j.id for j in jobs],
        [j.queue for j in jobs],
        [j.function for j in jobs],
        [j.args for j in jobs],
        [j.job_key for j in jobs],
        [j.run_at for j in jobs],
        [j.enqueued_at for j in jobs],
    ]


# Starts, each possibly with its finish: a fast job's start and finish usually share a batch, and then
# its attempt row is inserted finished and its job row written once, straight to the final status.
_APPLY_STARTS = """
WITH s AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[],
                         $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[],
                         $9::text[], $10::text[], $11::timestamptz[], $12::float8[],
                         $13::text[], $14::text[], $15::text[], $16::timestamptz[])
        AS s(job_id, attempt, worker, started_at, queue, function, args, enqueued_at,
             outcome, status, finished_at, duration_ms, error_type, error_message, traceback, retry_at)
), latest AS (
    SELECT DISTINCT ON (job_id) * FROM s ORDER BY job_id, attempt DESC
), latest_error AS (
    SELECT DISTINCT ON (job_id) job_id, error_type, error_message FROM s
    WHERE error_type IS NOT NULL ORDER BY job_id, attempt DESC
), upsert AS (
    INSERT INTO millrace_jobs AS j (id, queue, function, args, status, attempts, started_at, worker, enqueued_at,
                                    finished_at, run_at, last_error_type, last_error)
    SELECT l.job_id, queue, function, args, coalesce(status, 'in_progress'), attempt, started_at, worker, enqueued_at,
           CASE WHEN status IN ('succeeded', 'dead') THEN finished_at END, retry_at, e.error_type, e.error_message
    FROM latest l LEFT JOIN latest_error e USING (job_id)
    ON CONFLICT (id) DO UPDATE SET
        status = EXCLUDED.status, attempts = EXCLUDED.attempts, started_at = EXCLUDED.started_at,
        worker = EXCLUDED.worker, run_at = EXCLUDED.run_at, finished_at = EXCLUDED.finished_at,
        last_error_type = coalesce(EXCLUDED.last_error_type, j.last_error_type),
        last_error = coalesce(EXCLUDED.last_error, j.last_error), updated_at = now()
    WHERE j.attempts < EXCLUDED.attempts
)
INSERT INTO millrace_job_attempts (job_id, attempt, worker, started_at, finished_at, duration_ms, outcome,
                                   error_type, error_message, traceback)
SELECT job_id, attempt, worker, started_at, finished_at, duration_ms, outcome, error_type, error_message, traceback
FROM s
ON CONFLICT DO NOTHING
"""

# Run only for starts that are not the first of their budget, so the hot path never pays for it.
_MARK_EARLIER_LOST = """
WITH s AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::int[]) AS s(job_id, attempt, attempt_base)
), open_rows AS (
    -- an earlier attempt still open when a later one starts had its worker die under it
    UPDATE millrace_job_attempts a SET outcome = 'lost'
    FROM s WHERE a.job_id = s.job_id AND a.attempt < s.attempt AND a.outcome IS NULL
)
-- an earlier attempt with no row at all: its worker died before its start was written
INSERT INTO millrace_job_attempts (job_id, attempt, outcome)
SELECT s.job_id, n, 'lost' FROM s, generate_series(s.attempt_base + 1, s.attempt - 1) AS n
ON CONFLICT DO NOTHING
"""

_APPLY_FINISHES = """
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::timestamptz[],
                         $6::float8[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
        AS f(job_id, attempt, outcome, status, finished_at, duration_ms,
             error_type, error_message, traceback, retry_at)
), attempts AS (
    UPDATE millrace_job_attempts a SET
        finished_at = f.finished_at, duration_ms = f.duration_ms, outcome = f.outcome,
        error_type = f.error_type, error_message = f.error_message, traceback = f.traceback
    FROM f WHERE a.job_id = f.job_id AND a.attempt = f.attempt
)
UPDATE millrace_jobs j SET
    status = f.status,
    finished_at = CASE WHEN f.status IN ('succeeded', 'dead') THEN f.finished_at END,
    run_at = f.retry_at,
    last_error_type = coalesce(f.error_type, j.last_error_type),
    last_error = coalesce(f.error_message, j.last_error),
    updated_at = now()
FROM f
-- a finish that a later attempt has overtaken must not rewrite the job's status
WHERE j.id = f.job_id AND j.attempts <= f.attempt
"""


def _text(value: str | None, limit: int) -> str | None:
    # PostgreSQL text cannot hold NUL; an error message that carries one must not block the whole batch
    return None if value is None else value.replace("\x00", "\\0")[:limit]


async def apply_attempt_events(
    conn: Executor, starts: Sequence[AttemptStarted], finishes: Sequence[AttemptFinished]
) -> None:
    """Apply a batch of attempt events in two statements at most (three with retries); idempotent."""
    finish_of = {(f.job_id, f.attempt): f for f in finishes}
    paired = [(s, finish_of.pop((s.job_id, s.attempt), None)) for s in starts]
    if paired:
        await conn.execute(_APPLY_STARTS, *_start_columns(paired))
    later = [s for s in starts if s.attempt > s.attempt_base + 1]
    if later:  # after the starts: a record the worker creates (a cron run) exists only from then on
        await conn.execute(
            _MARK_EARLIER_LOST,
            [s.job_id for s in later],
            [s.attempt for s in later],
            [s.attempt_base for s in later],
        )
    if finish_of:
        await conn.execute(_APPLY_FINISHES, *_finish_columns(list(finish_of.values())))


def _start_columns(paired: list[tuple[AttemptStarted, AttemptFinished | None]]) -> list[list[Any]]:
    starts = [s for s, _ in paired]
    finishes = [f for _, f in paired]
    return [
        [s.job_id for s in starts],
        [s.attempt for s in starts],
        [s.worker for s in starts],
        [s.started_at for s in starts],
        [s.queue for s in starts],
        [s.function for s in starts],
        [s.args for s in starts],
        [s.enqueued_at for s in starts],
        *_finish_values(finishes),
    ]


def _finish_columns(finishes: list[AttemptFinished]) -> list[list[Any]]:
    return [[f.job_id for f in finishes], [f.attempt for f in finishes], *_finish_values(finishes)]


def _finish_values(finishes: Sequence[AttemptFinished | None]) -> list[list[Any]]:
    """The columns of a finish, in the order both statements take them; None where a start has no finish yet."""
    return [
        [f and f.outcome for f in finishes],
        [f and f.status for f in finishes],
        [f and f.finished_at for f in finishes],
        [f and f.duration_ms for f in finishes],
        [f and f.error_type for f in finishes],
        [f and _text(f.error_message, 4000) for f in finishes],
        [f and _text(f.traceback, 20000) for f in finishes],
        [f and f.retry_at for f in finishes],
    ]


_JOB_COLUMNS = """id, queue, function, args, job_key, status, attempts, attempt_base, run_at, enqueued_at,
    started_at, finished_at, worker, last_error_type, last_error"""


def _job(row: asyncpg.Record) -> JobRecord:
    return JobRecord(**dict(row))


async def find_job(conn: Executor, job_id: str) -> JobRecord | None:
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM millrace_jobs WHERE id = $1", job_id)
    return None if row is None else _job(row)


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
        f"""SELECT {_JOB_COLUMNS} FROM millrace_jobs
            WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR queue = $2)
              AND ($3::text IS NULL OR function = $3) AND ($4::text IS NULL OR last_error_type = $4)
            ORDER BY enqueued_at DESC, id LIMIT $5""",
        status,
        queue,
        function,
        error_type,
        limit,
    )
    return [_job(r) for r in rows]


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
            WHERE id = $1 AND {PENDING_SQL} RETURNING {_JOB_COLUMNS}""",
        job_id,
    )
    return None if row is None else _job(row)


async def mark_dead_requeued(conn: Executor, job_ids: Sequence[str]) -> list[OutboxEntry]:
    """Give dead jobs a fresh budget of attempts; their attempt history stays. Returns what to deliver."""
    rows = await conn.fetch(
        """UPDATE millrace_jobs SET status = 'queued', attempt_base = attempts, run_at = NULL,
                  finished_at = NULL, job_key = NULL, updated_at = now()
           WHERE id = ANY($1::text[]) AND status = 'dead'
           RETURNING id AS job_id, queue, function, args, attempt_base, run_at, now() AS enqueued_at""",
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


async def mark_dropped(
    conn: Connection, *, job_id: str, attempt: int, attempt_base: int, queue: str, function: str, reason: str
) -> None:
    """arq finished a job without running it (no payload, aborted, out of tries): its record ends dead.

    The record is created if there was none (a job planted in Redis by hand); a record that already
    reached a final status, or moved past this attempt, is left alone.
    """
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO millrace_jobs AS j (id, queue, function, status, attempts, attempt_base, finished_at,
                                               last_error_type, last_error)
               VALUES ($1, $2, $3, 'dead', $4, $5, now(), 'JobDropped', $6)
               ON CONFLICT (id) DO UPDATE SET status = 'dead', attempts = EXCLUDED.attempts, finished_at = now(),
                   run_at = NULL, last_error_type = 'JobDropped', last_error = EXCLUDED.last_error, updated_at = now()
               WHERE j.status NOT IN ('succeeded', 'dead', 'cancelled') AND j.attempts <= EXCLUDED.attempts""",
            job_id,
            queue,
            function,
            attempt,
            attempt_base,
            _text(reason, 4000),
        )
        await conn.execute(
            """INSERT INTO millrace_job_attempts AS a (job_id, attempt, finished_at, outcome, error_type, error_message)
               SELECT $1, $2, now(), 'dead', 'JobDropped', $3 WHERE EXISTS (SELECT 1 FROM millrace_jobs WHERE id = $1)
               ON CONFLICT (job_id, attempt) DO UPDATE SET finished_at = now(), outcome = 'dead',
                   error_type = 'JobDropped', error_message = EXCLUDED.error_message
               WHERE a.outcome IS NULL""",
            job_id,
            attempt,
            _text(reason, 4000),
        )


_PENDING_ENTRY = "id AS job_id, queue, function, args, attempt_base, run_at, enqueued_at"


async def list_pending_quiet_since(
    conn: Executor, queue: str, *, quiet_since: datetime, after_id: str, limit: int
) -> list[OutboxEntry]:
    """One keyset page of a queue's pending jobs unchanged since `quiet_since`, as the relay would deliver them.

    Cron runs are left out: their ticks come round again, and arq names their functions itself.
    """
    rows = await conn.fetch(
        f"""SELECT {_PENDING_ENTRY} FROM millrace_jobs
            WHERE queue = $1 AND {PENDING_SQL} AND updated_at < $2 AND id > $3 AND id NOT LIKE 'cron:%'
            ORDER BY id LIMIT $4""",
        queue,
        quiet_since,
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
