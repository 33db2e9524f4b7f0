"""Cron ticks: the primary key (name, tick) is what makes each tick run once."""

from __future__ import annotations

from datetime import datetime

from millrace.store.pool import Executor


async def claim_tick(conn: Executor, name: str, tick_at: datetime, job_id: str) -> bool:
    """True when this job owns the tick: it claimed it now, or claimed it on an earlier attempt."""
    owner = await conn.fetchval(
        """WITH claim AS (
               INSERT INTO millrace_cron_ticks (name, tick_at, job_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING job_id)
           SELECT job_id FROM claim
           UNION ALL SELECT job_id FROM millrace_cron_ticks WHERE name = $1 AND tick_at = $2
           LIMIT 1""",
        name,
        tick_at,
        job_id,
    )
    return bool(owner == job_id)


async def find_last_tick(conn: Executor, name: str) -> datetime | None:
    value: datetime | None = await conn.fetchval("SELECT max(tick_at) FROM millrace_cron_ticks WHERE name = $1", name)
    return value
