"""Producers for report exports (the bulk queue)."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import BULK


class ReportArgs(JobArgs):
    report_id: RowId


EXPORT_REPORT = JobRef("export_report", BULK, ReportArgs)


async def enqueue_report_export(client: JobClient, *, report_id: int, conn: Connection) -> EnqueuedJob:
    """Export a report recorded in `conn`'s transaction; the user is e-mailed a link when it is ready."""
    return await client.enqueue(EXPORT_REPORT, ReportArgs(report_id=report_id), conn=conn)
