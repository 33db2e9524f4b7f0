"""Jobs the runtime provides for its own upkeep: pruning old job records, by hand or on a schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import Field

from millrace import store
from millrace.context import JobContext
from millrace.declare import CronDefinition, CronSchedule, JobArgs, JobDefinition, JobRef, Missed, cron, job
from millrace.queues import Queue
from millrace.retry import RetryPolicy, fixed
from millrace.store.pool import Pool

log = structlog.get_logger(__name__)

PRUNE_RETRY = RetryPolicy(attempts=3, backoff=fixed(60, jitter=0.2))


class PruneJobRecordsArgs(JobArgs):
    older_than_days: int = Field(default=30, ge=1, le=36_500)


async def prune_job_records(pool: Pool, cutoff: datetime) -> int:
    """Delete succeeded and cancelled records finished before `cutoff`, and fold the stats of that time;
    dead letters stay. Returns how many records.

    In batches, each its own short transaction: one long delete would hold locks the workers need.
    """
    total = 0
    while True:
        async with pool.acquire() as conn:
            deleted = await store.jobs.delete_finished_before(conn, cutoff)
        total += deleted
        if deleted == 0:
            # the per-minute stats of that time are folded into their totals (the metrics never go down)
            async with pool.acquire() as conn:
                folded = await store.insights.fold_stats_before(conn, cutoff)
            log.info("job_records_pruned", deleted=total, stats_folded=folded, cutoff=cutoff.isoformat())
            return total


def prune_job(ref: JobRef[PruneJobRecordsArgs]) -> JobDefinition[Any, PruneJobRecordsArgs]:
    """The job behind `ref`, for pruning on demand (`millrace enqueue <ref.name> --args '{...}'`)."""

    @job(ref, retry=PRUNE_RETRY)
    async def run(ctx: JobContext[Any], args: PruneJobRecordsArgs) -> None:
        await prune_job_records(ctx.jobs.pool, datetime.now(UTC) - timedelta(days=args.older_than_days))

    return run


def prune_cron(
    *,
    queue: Queue,
    schedule: CronSchedule,
    keep_days: int = 30,
    missed: Missed = "run_once",
    name: str = "prune_job_records_nightly",
) -> CronDefinition[Any]:
    """A cron function that prunes records older than `keep_days` on each tick of `schedule`."""

    async def run(ctx: JobContext[Any]) -> None:
        await prune_job_records(ctx.jobs.pool, datetime.now(UTC) - timedelta(days=keep_days))

    return cron(queue=queue, schedule=schedule, missed=missed, retry=PRUNE_RETRY, name=name)(run)
