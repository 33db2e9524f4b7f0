"""Producers for the maintenance queue."""

from __future__ import annotations

from pydantic import Field

from millrace.client import EnqueuedJob, JobClient
from millrace.declare import JobArgs, JobRef
from queues import MAINTENANCE


class PruneJobRecordsArgs(JobArgs):
    older_than_days: int = Field(default=30, ge=1)


PRUNE_JOB_RECORDS = JobRef("prune_job_records", MAINTENANCE, PruneJobRecordsArgs)


async def enqueue_prune_job_records(client: JobClient, *, older_than_days: int = 30) -> EnqueuedJob:
    return await client.enqueue(PRUNE_JOB_RECORDS, {"older_than_days": older_than_days}, job_key="prune_job_records")
