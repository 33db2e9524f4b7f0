"""Cron ticks: the primary key (name, tick) is what makes each tick run once."""

from __future__ import annotations

from datetime import datetime

from millrace.records import FINAL_STATUSES
from millrace.store.pool import Executor


async def claim_tick(conn: Executor, name: str, tick_at: datetime, job_id: str) -> bool:
    """True when this job owns the tick: it claimed it now, or claimed it on an earlier attempt that
    has not finished (a retry, or a run whose worker died).

    arq keeps no result for cron jobs, so a worker whose clock lags may enqueue a tick again under the
    same id after it finished: the run's record, final by then, is what refuses it.
    """
    owner = await conn.fetchval(
        """WITH claim AS (
               INSERT INTO millrace_cron_ticks (name, tick_at, job_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING job_id)
           SELECT job_id FROM claim
           UNION ALL
           SELECT t.job_id FROM millrace_cron_ticks t WHERE t.name = $1 AND t.tick_at = $2 AND t.job_id = $3
               AND NOT EXISTS (SELECT 1 FROM millrace_jobs j WHERE j.id = $3 AND j.status = ANY($4::text[]))
           LIMIT 1""",
        name,
        tick_at,
        job_id,
        list(FINAL_STATUSES),
    )
    return owner is not None


async def find_last_tick(conn: Executor, name: str) -> datetime | None:
    value: datetime | None = await conn.fetchval("SELECT max(tick_at) FROM millrace_cron_ticks WHERE name = $1", name)
    return value
