"""Worker processes: registered at start, beating their heart, declared dead, and their jobs handed on.

PostgreSQL's clock judges every heartbeat, so the workers' own clocks do not matter. A worker is live
while it has beaten its heart within its own `silent_after_s`, and, past two of its heartbeat
intervals, only if it still holds its session's advisory lock: a process that dies closes its
socket, PostgreSQL ends the session and frees the lock, and the worker is known dead within seconds
instead of waiting out the whole silence.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from millrace.records import OutboxEntry
from millrace.store.pool import Executor

#: the first key of every worker's advisory lock ("mr"); the second is the worker's lock_key
WORKER_LOCK_CLASS = 0x6D72

#: the liveness rule, for a row `w` of millrace_workers
LIVE_WORKER_SQL = f"""(w.stopped_at IS NULL
    AND w.heartbeat_at > now() - make_interval(secs => w.silent_after_s)
    AND (w.heartbeat_at > now() - make_interval(secs => 2 * w.heartbeat_interval_s)
         OR EXISTS (SELECT 1 FROM pg_locks l
                    WHERE l.locktype = 'advisory' AND l.classid = {WORKER_LOCK_CLASS}
                      AND l.objid = w.lock_key::oid AND l.objsubid = 2 AND l.granted)))"""

_REGISTER = """
INSERT INTO millrace_workers (id, queue, host, pid, version, lock_key, heartbeat_interval_s, silent_after_s)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""

#: jobs taken back at most per statement (the next beat takes the rest)
REAP_BATCH = 500

# A heartbeat: this worker's beat, and what it must hear (its queue paused, aborts asked for). It touches
# no row but this worker's own, so it never waits behind another worker's locks: a beat that waited would
# let this worker be declared dead for what another one holds.
_BEAT = """
WITH beat AS (
    -- a worker declared dead by mistake (cut off, frozen) comes back to life; its old leases stay void
    UPDATE millrace_workers SET heartbeat_at = now(), running = $2, jobs_done = $3, stopped_at = NULL,
                                stop_reason = NULL
    WHERE id = $1 RETURNING id
)
SELECT (SELECT count(*) FROM beat) AS beaten,
       EXISTS (SELECT 1 FROM millrace_queue_pauses p WHERE p.queue = $5) AS paused,
       array(SELECT j.id FROM millrace_jobs j
             WHERE j.id = ANY($4::text[]) AND j.worker = $1 AND j.status = 'in_progress'
               AND j.abort_requested_at IS NOT NULL) AS aborts
"""

# The reaper: dead workers declared, their jobs handed on, and this worker's own lost claims put back. It
# takes only the rows nobody holds (SKIP LOCKED), and never waits for one: a worker frozen inside a
# guarded transaction holds its jobs' rows (ctx.first_time takes them FOR SHARE), and a reaper that waited
# for them would stall every other dead worker's jobs behind them, for as long as the freeze lasts. A row
# skipped now is taken at a later beat, as soon as its holder lets go (the frozen worker's transaction
# ends, or PostgreSQL ends its session); the holder's late finish is then fenced off by the lease.
_REAP = f"""
WITH dead AS (
    UPDATE millrace_workers d SET stopped_at = now(), stop_reason = 'silent'
    WHERE d.id IN (SELECT w.id FROM millrace_workers w
                   WHERE w.id <> $1 AND w.stopped_at IS NULL AND NOT {LIVE_WORKER_SQL}
                   FOR UPDATE OF w SKIP LOCKED)
    RETURNING d.id
), takeable AS (
    SELECT j.id FROM millrace_jobs j
    WHERE j.status = 'in_progress' AND j.worker IS DISTINCT FROM $1
      AND NOT EXISTS (SELECT 1 FROM millrace_workers w WHERE w.id = j.worker AND {LIVE_WORKER_SQL})
    -- a few hundred a beat, so that a whole machine's jobs never make a statement past the beat's bound
    LIMIT {REAP_BATCH}
    FOR NO KEY UPDATE OF j SKIP LOCKED
), reaped AS (
    -- a job whose abort was asked for is not handed on: it ends cancelled
    UPDATE millrace_jobs j SET status = CASE WHEN j.abort_requested_at IS NULL THEN 'queued' ELSE 'cancelled' END,
                               finished_at = CASE WHEN j.abort_requested_at IS NOT NULL THEN now() END,
                               lease = j.lease + 1, run_at = NULL, updated_at = now()
    FROM takeable WHERE j.id = takeable.id
    RETURNING j.id, j.queue, j.function, j.args, j.attempt_base, j.enqueued_at, j.attempts, j.worker, j.status,
              j.priority
), lost AS (
    UPDATE millrace_job_attempts a SET outcome = 'lost', error_type = 'WorkerLost',
        error_message = 'worker ' || coalesce(reaped.worker, '?') || ' went silent; '
            || CASE WHEN reaped.status = 'cancelled' THEN 'its abort was asked for, so the job is cancelled'
                    ELSE 'the job was handed on' END
    FROM reaped WHERE a.job_id = reaped.id AND a.attempt = reaped.attempts AND a.outcome IS NULL
), orphans AS (
    -- this worker's own claims that nothing here runs: the claim was written, but its answer never
    -- arrived (PostgreSQL went away in between); the job goes back, the attempt it never made uncounted
    SELECT j.id FROM millrace_jobs j
    WHERE j.worker = $1 AND j.status = 'in_progress' AND NOT (j.id = ANY($2::text[]))
      AND j.started_at < now() - make_interval(secs => $3)
    LIMIT {REAP_BATCH}
    FOR NO KEY UPDATE OF j SKIP LOCKED
), orphaned AS (
    UPDATE millrace_jobs j SET status = 'queued', counted_attempts = j.counted_attempts - 1, lease = j.lease + 1,
                               run_at = NULL, updated_at = now()
    FROM orphans WHERE j.id = orphans.id
    RETURNING j.id, j.queue, j.function, j.args, j.attempt_base, j.enqueued_at, j.attempts, j.priority
), abandoned AS (
    UPDATE millrace_job_attempts a SET outcome = 'interrupted', finished_at = now(), error_type = 'ClaimAbandoned',
        error_message = 'the claim was written but its answer was lost; the job went back to its queue'
    FROM orphaned WHERE a.job_id = orphaned.id AND a.attempt = orphaned.attempts AND a.outcome IS NULL
), handed AS (
    SELECT id, queue, function, args, attempt_base, enqueued_at, priority FROM reaped WHERE status = 'queued'
    UNION ALL
    SELECT id, queue, function, args, attempt_base, enqueued_at, priority FROM orphaned
)
SELECT (SELECT count(*) FROM dead) AS declared_dead,
       id AS job_id, queue, function, args, attempt_base, enqueued_at, priority
FROM (SELECT 1) one LEFT JOIN handed ON true
"""
#: a claim this old with nothing running it here was lost on its way back (see `orphaned` above)
ORPHANED_CLAIM_AGE_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRow:
    id: str
    queue: str
    host: str
    pid: int
    version: str
    lock_key: int
    heartbeat_interval_s: float
    silent_after_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat:
    #: False when this worker's row is gone (pruned): it must register again
    registered: bool
    #: whether a person has paused this worker's queue (store.queues)
    paused: bool = False
    #: jobs this worker runs whose abort a person asked for (store.jobs.request_abort)
    aborts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reaped:
    declared_dead: int
    #: jobs taken from dead workers (or from this worker's lost claims), to put back in Redis
    jobs: list[OutboxEntry]


async def register(conn: Executor, worker: WorkerRow) -> None:
    await conn.execute(
        _REGISTER,
        worker.id,
        worker.queue,
        worker.host,
        worker.pid,
        worker.version,
        worker.lock_key,
        worker.heartbeat_interval_s,
        worker.silent_after_s,
    )


async def beat(conn: Executor, worker_id: str, *, queue: str, running: Collection[str], jobs_done: int) -> Beat:
    """Beat `worker_id`'s heart (it runs the jobs `running` now); hear whether `queue` is paused."""
    row = await conn.fetchrow(_BEAT, worker_id, len(running), jobs_done, list(running), queue)
    assert row is not None
    return Beat(registered=row["beaten"] > 0, paused=row["paused"], aborts=list(row["aborts"]))


async def reap(conn: Executor, worker_id: str, *, running: Collection[str]) -> Reaped:
    """Declare silent workers dead and take back their jobs, and `worker_id`'s lost claims (it runs the
    jobs `running`): only rows nobody holds, never waiting for a lock."""
    rows = await conn.fetch(_REAP, worker_id, list(running), ORPHANED_CLAIM_AGE_S)
    jobs = [
        OutboxEntry(
            job_id=r["job_id"],
            queue=r["queue"],
            function=r["function"],
            args=r["args"],
            attempt_base=r["attempt_base"],
            run_at=None,
            enqueued_at=r["enqueued_at"],
            priority=r["priority"],
        )
        for r in rows
        if r["job_id"] is not None
    ]
    return Reaped(declared_dead=rows[0]["declared_dead"], jobs=jobs)


async def mark_stopped(conn: Executor, worker_id: str, reason: str) -> None:
    await conn.execute(
        "UPDATE millrace_workers SET stopped_at = now(), stop_reason = $2 WHERE id = $1", worker_id, reason
    )


async def record_stall(
    conn: Executor, worker_id: str, *, job_id: str | None, attempt: int | None, message: str, stack: str
) -> None:
    """The watchdog's last words: the attempt that blocked the event loop, and the worker stopped.

    The attempt stays counted, as a lost one: a job that blocks every worker it lands on ends dead.
    """
    if job_id is not None:
        await conn.execute(
            """UPDATE millrace_job_attempts SET outcome = 'lost', finished_at = now(),
                      error_type = 'EventLoopBlocked', error_message = $3, traceback = $4
               WHERE job_id = $1 AND attempt = $2 AND outcome IS NULL""",
            job_id,
            attempt,
            message,
            stack,
        )
        await conn.execute(
            """UPDATE millrace_jobs SET last_error_type = 'EventLoopBlocked', last_error = $2, updated_at = now()
               WHERE id = $1""",
            job_id,
            message,
        )
    await mark_stopped(conn, worker_id, "event_loop_blocked")
