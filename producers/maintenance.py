"""Producers for the maintenance queue: pruning job records on demand (the runtime provides the job)."""

from __future__ import annotations

from millrace import EnqueuedJob, JobClient, JobRef, PruneJobRecordsArgs
from queues import MAINTENANCE

PRUNE_JOB_RECORDS = JobRef("prune_job_records", MAINTENANCE, PruneJobRecordsArgs)


async def enqueue_prune_job_records(client: JobClient, *, older_than_days: int = 30) -> EnqueuedJob:
    args = PruneJobRecordsArgs(older_than_days=older_than_days)
    return await client.enqueue(PRUNE_JOB_RECORDS, args, job_key="prune_job_records")
