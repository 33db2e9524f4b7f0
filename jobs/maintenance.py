"""Maintenance: keeping the job records table to a useful size."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

import db.jobs
from jobs.services import Services
from millrace.context import JobContext
from millrace.declare import CronSchedule, cron, job
from millrace.retry import RetryPolicy, fixed
from producers.maintenance import PRUNE_JOB_RECORDS, PruneJobRecordsArgs
from queues import MAINTENANCE

log = structlog.get_logger(__name__)

PRUNE_RETRY = RetryPolicy(attempts=3, backoff=fixed(60, jitter=0.2))


@job(PRUNE_JOB_RECORDS, retry=PRUNE_RETRY)
async def prune_job_records(ctx: JobContext[Services], args: PruneJobRecordsArgs) -> None:
    await prune_before(ctx.services, datetime.now(UTC) - timedelta(days=args.older_than_days))


@cron(queue=MAINTENANCE, schedule=CronSchedule(hour=3, minute=0), missed="run_once", retry=PRUNE_RETRY)
async def nightly_prune_job_records(ctx: JobContext[Services]) -> None:
    """Every night at 03:00 UTC; a night missed while the workers were down is made up once."""
    await prune_before(ctx.services, datetime.now(UTC) - timedelta(days=30))


async def prune_before(services: Services, cutoff: datetime) -> None:
    # in batches, each its own short transaction: a long delete would hold locks the workers need
    total = 0
    while True:
        async with services.db.acquire() as conn:
            deleted = await db.jobs.delete_finished_before(conn, cutoff)
        total += deleted
        if deleted == 0:
            break
    log.info("job_records_pruned", deleted=total, cutoff=cutoff.isoformat())
