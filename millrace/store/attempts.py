"""Attempts under a lease: claimed before a body runs, finished or handed back only with the lease they hold.

PostgreSQL decides who runs a job, not Redis. A claim succeeds only for a pending job, or for one held by
a worker that is dead; it bumps the job's lease and counts the attempt. A finish, or a hand-back at
shutdown, applies only while the job still carries the lease of that attempt, so a worker that was cut
off or frozen, and came back after its job was handed on, can no longer write anything.

Every function takes a batch and costs one statement, so the record writer can group them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from millrace.records import (
    PENDING_STATUSES,
    AttemptFinished,
    AttemptReleased,
    Claimed,
    ClaimRequest,
    JobStatus,
    Progress,
)
from millrace.stats import ZERO_SQL, added_sql, cumulative_sql
from millrace.store.pool import Executor
from millrace.store.workers import LIVE_WORKER_SQL
from millrace.text import storable_text

_PENDING = ", ".join(f"'{s}'" for s in PENDING_STATUSES)

# A record the worker creates itself (a cron run, a job planted in Redis by hand) is inserted claimed.
# A job whose row another transaction holds is refused at once, never waited for: a worker frozen inside a
# guarded transaction holds its job's row (FOR SHARE) for as long as the freeze lasts, and a claim that
# waited would hold this worker's whole batch of claims and finishes behind it. The copy is tried again
# later (execution._refused), by when the holder has let go or its lease is void.
_CLAIM = f"""
WITH requested AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::text[])
        AS c(id, queue, function, args, enqueued_at, worker)
), free AS (
    SELECT j.id FROM millrace_jobs j WHERE j.id = ANY($1::text[]) FOR NO KEY UPDATE OF j SKIP LOCKED
), c AS (
    SELECT r.* FROM requested r
    WHERE r.id IN (SELECT id FROM free) OR NOT EXISTS (SELECT 1 FROM millrace_jobs j WHERE j.id = r.id)
), claimed AS (
    INSERT INTO millrace_jobs AS j (id, queue, function, args, status, attempts, counted_attempts, lease, worker,
                                    started_at, enqueued_at)
    SELECT id, queue, function, args, 'in_progress', 1, 1, 1, worker, now(), enqueued_at FROM c
    ON CONFLICT (id) DO UPDATE SET
        status = 'in_progress', attempts = j.attempts + 1, counted_attempts = j.counted_attempts + 1,
        lease = j.lease + 1, worker = EXCLUDED.worker, started_at = now(), run_at = NULL, updated_at = now()
    WHERE j.status IN ({_PENDING})
       -- the holder died before the reaper saw it: take the job over now
       OR (j.status = 'in_progress' AND NOT EXISTS (
               SELECT 1 FROM millrace_workers w WHERE w.id = j.worker AND {LIVE_WORKER_SQL}))
    RETURNING j.id, j.queue, j.function, j.attempts, j.counted_attempts, j.lease, j.worker
), due AS (
    -- when each job was due, read before the claim: the snapshot every step of one statement shares
    SELECT j.id, coalesce(j.run_at, j.enqueued_at) AS due_at FROM millrace_jobs j JOIN c ON c.id = j.id
), started AS (
    INSERT INTO millrace_stats AS s (queue, function, minute, started, first_started, wait_le, wait_sum_s,
                                     duration_le)
    SELECT claimed.queue, claimed.function, date_trunc('minute', now()), count(*),
           count(*) FILTER (WHERE claimed.attempts = 1), {cumulative_sql("w.s")}, sum(w.s), {ZERO_SQL}
    FROM claimed JOIN c ON c.id = claimed.id LEFT JOIN due ON due.id = claimed.id
        CROSS JOIN LATERAL (
            SELECT greatest(0, extract(epoch FROM now() - coalesce(due.due_at, c.enqueued_at)))::float8 AS s) w
    GROUP BY claimed.queue, claimed.function
    ORDER BY claimed.queue, claimed.function  -- every writer locks the rows in one order: no deadlock
    ON CONFLICT (queue, function, minute) DO UPDATE SET started = s.started + EXCLUDED.started,
        first_started = s.first_started + EXCLUDED.first_started,
        wait_le = {added_sql("s.wait_le", "EXCLUDED.wait_le")}, wait_sum_s = s.wait_sum_s + EXCLUDED.wait_sum_s
), lost AS (
    -- an earlier attempt still open had its worker die under it
    UPDATE millrace_job_attempts a SET outcome = 'lost'
    FROM claimed WHERE a.job_id = claimed.id AND a.attempt < claimed.attempts AND a.outcome IS NULL
), opened AS (
    INSERT INTO millrace_job_attempts (job_id, attempt, worker, started_at)
    SELECT id, attempts, worker, now() FROM claimed
    ON CONFLICT DO NOTHING
)
SELECT id, attempts, counted_attempts, lease FROM claimed
"""

_FINISH = f"""
WITH f AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::float8[], $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::text[])
        AS f(job_id, attempt, lease, outcome, status, finished_at, duration_ms,
             error_type, error_message, traceback, retry_at, fingerprint)
), held AS (
    UPDATE millrace_jobs j SET
        -- a failure while an abort is asked for is not retried: the job ends cancelled
        status = CASE WHEN f.status = 'retrying' AND j.abort_requested_at IS NOT NULL THEN 'cancelled'
                      ELSE f.status END,
        finished_at = CASE WHEN f.status IN ('succeeded', 'dead', 'cancelled') OR j.abort_requested_at IS NOT NULL
                           THEN f.finished_at END,
        run_at = CASE WHEN j.abort_requested_at IS NULL THEN f.retry_at END,
        last_error_type = coalesce(f.error_type, j.last_error_type),
        last_error = coalesce(f.error_message, j.last_error),
        last_fingerprint = coalesce(f.fingerprint, j.last_fingerprint),
        updated_at = now()
    FROM f WHERE j.id = f.job_id AND j.lease = f.lease AND j.status = 'in_progress'
    RETURNING j.id, j.group_id, j.status, j.queue, j.function
), finished AS (
    INSERT INTO millrace_stats AS s (queue, function, minute, wait_le, succeeded, retried, dead, duration_le,
                                     duration_sum_s)
    SELECT held.queue, held.function, date_trunc('minute', f.finished_at), {ZERO_SQL},
           count(*) FILTER (WHERE f.outcome = 'succeeded'), count(*) FILTER (WHERE f.outcome = 'retrying'),
           count(*) FILTER (WHERE f.outcome = 'dead'), {cumulative_sql("f.duration_ms / 1000")},
           sum(f.duration_ms / 1000)
    FROM held JOIN f ON f.job_id = held.id
    GROUP BY held.queue, held.function, date_trunc('minute', f.finished_at)
    ORDER BY 1, 2, 3  -- every writer locks the rows in one order: no deadlock
    ON CONFLICT (queue, function, minute) DO UPDATE SET succeeded = s.succeeded + EXCLUDED.succeeded,
        retried = s.retried + EXCLUDED.retried, dead = s.dead + EXCLUDED.dead,
        duration_le = {added_sql("s.duration_le", "EXCLUDED.duration_le")},
        duration_sum_s = s.duration_sum_s + EXCLUDED.duration_sum_s
), attempts AS (
    UPDATE millrace_job_attempts a SET
        finished_at = f.finished_at, duration_ms = f.duration_ms,
        outcome = CASE WHEN held.id IS NULL THEN a.outcome ELSE f.outcome END,
        error_type = CASE WHEN held.id IS NULL THEN 'LeaseLost' ELSE f.error_type END,
        error_message = CASE WHEN held.id IS NULL
            THEN 'finished (' || f.outcome || ') after the job was handed to another worker; discarded'
            ELSE f.error_message END,
        traceback = f.traceback, fingerprint = f.fingerprint
    FROM f LEFT JOIN held ON held.id = f.job_id
    WHERE a.job_id = f.job_id AND a.attempt = f.attempt
)
SELECT id, group_id IS NOT NULL AND status IN ('succeeded', 'dead', 'cancelled') AS group_child_ended FROM held
"""

# A deploy: the attempt is on record as interrupted, and the budget gets it back.
_RELEASE = """
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::timestamptz[], $5::float8[], $6::text[],
                         $7::text[])
        AS r(job_id, attempt, lease, finished_at, duration_ms, error_type, error_message)
), held AS (
    -- a job whose abort was asked for is not handed back: it ends cancelled
    UPDATE millrace_jobs j SET status = CASE WHEN j.abort_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
                               finished_at = CASE WHEN j.abort_requested_at IS NOT NULL THEN r.finished_at END,
                               counted_attempts = j.counted_attempts - 1, lease = j.lease + 1,
                               run_at = NULL, updated_at = now()
    FROM r WHERE j.id = r.job_id AND j.lease = r.lease AND j.status = 'in_progress'
    RETURNING j.id
), attempts AS (
    UPDATE millrace_job_attempts a SET finished_at = r.finished_at, duration_ms = r.duration_ms,
        outcome = 'interrupted', error_type = r.error_type, error_message = r.error_message
    FROM r JOIN held ON held.id = r.job_id
    WHERE a.job_id = r.job_id AND a.attempt = r.attempt
)
SELECT id FROM held
"""


async def claim(conn: Executor, requests: Sequence[ClaimRequest]) -> dict[str, Claimed]:
    """Claim each job for its worker; the jobs granted, by id. One request per job id per call."""
    rows = await conn.fetch(
        _CLAIM,
        [r.job_id for r in requests],
        [r.queue for r in requests],
        [r.function for r in requests],
        [r.args for r in requests],
        [r.enqueued_at for r in requests],
        [r.worker for r in requests],
    )
    return {
        row["id"]: Claimed(attempt=row["attempts"], counted_attempts=row["counted_attempts"], lease=row["lease"])
        for row in rows
    }


async def statuses(conn: Executor, job_ids: Sequence[str]) -> dict[str, JobStatus]:
    """Why claims were refused: the status each job has now."""
    rows = await conn.fetch("SELECT id, status FROM millrace_jobs WHERE id = ANY($1::text[])", list(job_ids))
    return {row["id"]: row["status"] for row in rows}


async def finish(conn: Executor, finishes: Sequence[AttemptFinished]) -> set[str]:
    """Apply each finish that still holds its lease; returns the ids applied (the rest were fenced off)."""
    applied, _ = await finish_noting_group_ends(conn, finishes)
    return applied


async def finish_noting_group_ends(conn: Executor, finishes: Sequence[AttemptFinished]) -> tuple[set[str], list[str]]:
    """As `finish`, and the ids among them of group children that reached a final state: the fan-in
    counts those (store.groups.count_ended)."""
    rows = await conn.fetch(_FINISH, *_finish_columns(finishes))
    return {row["id"] for row in rows}, [row["id"] for row in rows if row["group_child_ended"]]


async def release(conn: Executor, releases: Sequence[AttemptReleased]) -> set[str]:
    """Hand jobs back to their queue without spending an attempt; returns the ids released."""
    rows = await conn.fetch(
        _RELEASE,
        [r.job_id for r in releases],
        [r.attempt for r in releases],
        [r.lease for r in releases],
        [r.finished_at for r in releases],
        [r.duration_ms for r in releases],
        [r.error_type for r in releases],
        [r.error_message for r in releases],
    )
    return {row["id"] for row in rows}


def _finish_columns(finishes: Sequence[AttemptFinished]) -> list[list[Any]]:
    return [
        [f.job_id for f in finishes],
        [f.attempt for f in finishes],
        [f.lease for f in finishes],
        [f.outcome for f in finishes],
        [f.status for f in finishes],
        [f.finished_at for f in finishes],
        [f.duration_ms for f in finishes],
        [f.error_type for f in finishes],
        [storable_text(f.error_message, 4000) for f in finishes],
        [storable_text(f.traceback, 20000) for f in finishes],
        [f.retry_at for f in finishes],
        [f.fingerprint for f in finishes],
    ]


async def mark_step_done(conn: Executor, job_id: str, step: str, *, lease: int, attempt: int) -> bool:
    """Record `step` as done by this attempt; False if an earlier attempt of the job recorded it already."""
    inserted = await conn.fetchval(
        """INSERT INTO millrace_job_steps (job_id, step, lease, attempt) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""",
        job_id,
        step,
        lease,
        attempt,
    )
    return bool(inserted)


async def hold_lease(conn: Executor, job_id: str, lease: int) -> bool:
    """Whether the attempt under `lease` still holds the job; inside a transaction, the job's row stays
    locked (shared) until it ends, so that nothing hands the job on between this check and the commit."""
    held = await conn.fetchval("SELECT true FROM millrace_jobs WHERE id = $1 AND lease = $2 FOR SHARE", job_id, lease)
    return bool(held)


#: a progress message is a status line, not a log
MAX_PROGRESS_MESSAGE_CHARS = 500

_WRITE_PROGRESS = """
    UPDATE millrace_jobs j SET progress_done = p.done, progress_total = p.total, progress_message = p.message,
        progress_at = p.at
    FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::timestamptz[])
        AS p(job_id, lease, done, total, message, at)
    WHERE j.id = p.job_id AND j.lease = p.lease
"""


async def write_progress(conn: Executor, reports: Sequence[tuple[str, int, Progress]]) -> None:
    """Each job's latest progress, written only while the record carries the lease that reported it."""
    await conn.execute(
        _WRITE_PROGRESS,
        [job_id for job_id, _, _ in reports],
        [lease for _, lease, _ in reports],
        [p.done for _, _, p in reports],
        [p.total for _, _, p in reports],
        [storable_text(p.message, MAX_PROGRESS_MESSAGE_CHARS) for _, _, p in reports],
        [p.at for _, _, p in reports],
    )
