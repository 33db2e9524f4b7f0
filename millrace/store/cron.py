"""Cron ticks: the primary key (name, tick) is what makes each tick run once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


async def seconds_until(conn: Executor, moment: datetime) -> float:
    """How long until `moment` by PostgreSQL's clock (below 0: past)."""
    value: float = await conn.fetchval("SELECT extract(epoch FROM $1::timestamptz - clock_timestamp())::float8", moment)
    return value


async def find_last_tick(conn: Executor, name: str) -> datetime | None:
    value: datetime | None = await conn.fetchval("SELECT max(tick_at) FROM millrace_cron_ticks WHERE name = $1", name)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class DeclaredSchedule:
    name: str
    queue: str
    #: CronSchedule's fields, sets as sorted lists
    fields: dict[str, Any]
    missed: str


async def declare_schedules(conn: Executor, schedules: Sequence[DeclaredSchedule]) -> None:
    """Record the schedules a worker runs (the latest start's word wins)."""
    await conn.execute(
        """INSERT INTO millrace_cron_schedules (name, queue, fields, missed)
           SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[])
           ON CONFLICT (name) DO UPDATE SET queue = EXCLUDED.queue, fields = EXCLUDED.fields,
               missed = EXCLUDED.missed, declared_at = now()""",
        [s.name for s in schedules],
        [s.queue for s in schedules],
        [s.fields for s in schedules],
        [s.missed for s in schedules],
    )


async def declared_schedules(conn: Executor) -> list[DeclaredSchedule]:
    rows = await conn.fetch("SELECT name, queue, fields, missed FROM millrace_cron_schedules ORDER BY name")
    return [DeclaredSchedule(**dict(r)) for r in rows]
