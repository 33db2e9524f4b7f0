"""Producers for the integrations queue: keeping third-party systems in step with ours."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import INTEGRATIONS


class CrmContactArgs(JobArgs):
    user_id: RowId


SYNC_CRM_CONTACT = JobRef("sync_crm_contact", INTEGRATIONS, CrmContactArgs)


async def enqueue_crm_sync(client: JobClient, *, user_id: int, conn: Connection | None = None) -> EnqueuedJob:
    """Create or update the user's CRM contact; a pending sync for the same user absorbs this one."""
    return await client.enqueue(SYNC_CRM_CONTACT, CrmContactArgs(user_id=user_id), conn=conn, job_key=f"crm:{user_id}")
