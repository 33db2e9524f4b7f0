"""Fan-out groups: children counted once each as they end, the follow-up enqueued once when none remain."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from millrace.records import FINAL_STATUSES, GroupStatus, NewJob
from millrace.store import outbox
from millrace.store.pool import Executor

_FINAL_SQL = "(" + ", ".join(f"'{s}'" for s in FINAL_STATUSES) + ")"

#: count the given children that ended and were not counted yet; returns the groups they emptied
_COUNT_ENDED = f"""
WITH counted AS (
    UPDATE millrace_jobs SET group_counted = true
    WHERE id = ANY($1::text[]) AND group_id IS NOT NULL AND NOT group_counted AND status IN {_FINAL_SQL}
    RETURNING group_id
), per_group AS (
    SELECT group_id, count(*) AS n FROM counted GROUP BY group_id
), updated AS (
    UPDATE millrace_job_groups g SET remaining = g.remaining - p.n,
        completed_at = CASE WHEN g.remaining - p.n = 0 THEN now() END
    FROM per_group p WHERE g.id = p.group_id
    RETURNING g.id, g.remaining, g.then_queue, g.then_function, g.then_args, g.then_trace_context
)
SELECT id, then_queue, then_function, then_args, then_trace_context FROM updated WHERE remaining = 0
"""

_UNCOUNTED_ENDED = f"""
SELECT id FROM millrace_jobs
WHERE group_id IS NOT NULL AND NOT group_counted AND status IN {_FINAL_SQL}
LIMIT $1
"""


async def insert_group(conn: Executor, group_id: str, children: Sequence[NewJob], *, then: NewJob) -> None:
    """Write the group and its children (each carrying `group_id`), inside the caller's transaction; a
    group without children is complete at once, and its follow-up enqueued now."""
    await conn.execute(
        """INSERT INTO millrace_job_groups (id, total, remaining, then_queue, then_function, then_args,
                                            then_job_id, completed_at, then_trace_context)
           VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8)""",
        group_id,
        len(children),
        then.queue,
        then.function,
        then.args,
        None if children else then.id,
        None if children else datetime.now(UTC),
        then.trace_context,
    )
    await outbox.insert_jobs_with_outbox(conn, children or [then])


async def count_ended(conn: Executor, job_ids: Sequence[str]) -> int:
    """Count the children among `job_ids` that reached a final state; enqueue the follow-up of each group
    they emptied, in one transaction of the caller's; returns the follow-ups enqueued."""
    emptied = await conn.fetch(_COUNT_ENDED, list(job_ids))
    if not emptied:
        return 0
    now = datetime.now(UTC)
    follow_ups = [_follow_up(row, now) for row in emptied]
    await outbox.insert_jobs_with_outbox(conn, follow_ups)
    await conn.executemany(
        "UPDATE millrace_job_groups SET then_job_id = $2 WHERE id = $1",
        [(row["id"], job.id) for row, job in zip(emptied, follow_ups, strict=True)],
    )
    return len(follow_ups)


async def list_uncounted_ended(conn: Executor, limit: int = 1000) -> list[str]:
    """Children that ended outside the finish path (cancelled, dropped) and are not counted yet."""
    return [r["id"] for r in await conn.fetch(_UNCOUNTED_ENDED, limit)]


def _follow_up(row: Any, now: datetime) -> NewJob:
    return NewJob(
        id=uuid.uuid4().hex,
        queue=row["then_queue"],
        function=row["then_function"],
        args=row["then_args"],
        job_key=None,
        run_at=None,
        enqueued_at=now,
        trace_context=row["then_trace_context"],
    )


async def group_status(conn: Executor, group_id: str) -> GroupStatus | None:
    row = await conn.fetchrow(
        """SELECT g.total, g.then_job_id,
                  coalesce(sum(j.progress_done), 0) AS progress_done,
                  count(j.id) FILTER (WHERE j.status IN ('succeeded')) AS succeeded,
                  count(j.id) FILTER (WHERE j.status IN ('dead')) AS dead,
                  count(j.id) FILTER (WHERE j.status IN ('cancelled')) AS cancelled,
                  max(j.last_error) FILTER (WHERE j.status = 'dead') AS an_error
           FROM millrace_job_groups g LEFT JOIN millrace_jobs j ON j.group_id = g.id
           WHERE g.id = $1 GROUP BY g.id""",
        group_id,
    )
    return None if row is None else GroupStatus(**dict(row))
