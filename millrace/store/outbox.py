"""The transactional outbox: jobs written inside a caller's transaction, claimed by the relay."""

from __future__ import annotations

from collections.abc import Sequence

from millrace.records import NewJob, OutboxEntry
from millrace.store.jobs import INSERT_NEW_JOBS, NEW_JOBS, new_job_columns
from millrace.store.pool import Executor

#: NOTIFY channel; the payload is the queue name, so a relay wakes only for its own queues
CHANNEL = "millrace_outbox"


def _into_outbox(source: str) -> str:
    """The one insert into the outbox: from the rows named `source`, with a NOTIFY delivered at commit."""
    return f"""out AS (
    INSERT INTO millrace_outbox (job_id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context,
                                 priority)
    SELECT id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context, priority FROM {source}
    RETURNING job_id, queue)
SELECT job_id, pg_notify('{CHANNEL}', queue) FROM out"""


_INSERT_JOBS_WITH_OUTBOX = f"WITH {NEW_JOBS}, job AS ({INSERT_NEW_JOBS}), {_into_outbox('job')}"

_INSERT_ENTRIES = f"""WITH entry AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::timestamptz[],
                         $7::timestamptz[], $8::jsonb[], $9::int[])
        AS e(id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context, priority)),
{_into_outbox("entry")}"""


async def insert_jobs_with_outbox(conn: Executor, jobs: Sequence[NewJob]) -> set[str]:
    """Write jobs and their outbox rows in one statement, inside the caller's transaction.

    Returns the ids created: a job whose key a pending job holds is not. The relay's NOTIFY is
    delivered at commit, and never if the transaction rolls back.
    """
    rows = await conn.fetch(_INSERT_JOBS_WITH_OUTBOX, *new_job_columns(jobs))
    return {r["job_id"] for r in rows}


async def insert_entries(conn: Executor, entries: Sequence[OutboxEntry]) -> None:
    """Hand jobs already on record to the relay: a direct push that failed, dead letters retried."""
    await conn.execute(
        _INSERT_ENTRIES,
        [e.job_id for e in entries],
        [e.queue for e in entries],
        [e.function for e in entries],
        [e.args for e in entries],
        [e.attempt_base for e in entries],
        [e.run_at for e in entries],
        [e.enqueued_at for e in entries],
        [e.trace_context for e in entries],
        [e.priority for e in entries],
    )


async def claim_entries(conn: Executor, queues: list[str] | None, limit: int) -> list[OutboxEntry]:
    """Delete and return up to `limit` entries; call inside a transaction that commits after delivery.

    SKIP LOCKED lets several relays share the table without waiting on each other.
    """
    rows = await conn.fetch(
        """DELETE FROM millrace_outbox WHERE id IN (
               SELECT id FROM millrace_outbox WHERE ($1::text[] IS NULL OR queue = ANY($1))
               ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING job_id, queue, function, args, attempt_base, run_at, enqueued_at, trace_context, priority""",
        queues,
        limit,
    )
    return [OutboxEntry(**dict(r)) for r in sorted(rows, key=lambda r: r["enqueued_at"])]


async def delete_entries_of(conn: Executor, job_id: str) -> None:
    """Forget a job's undelivered entries: it was cancelled before the relay got to it."""
    await conn.execute("DELETE FROM millrace_outbox WHERE job_id = $1", job_id)


async def count_entries(conn: Executor) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM millrace_outbox"))
