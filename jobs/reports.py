"""Report exports: a large query streamed through a server-side cursor into a CSV file in storage, with
flat memory whatever the size; every cell neutralized for spreadsheets; the user e-mailed a link.

Run again after a crash, the export writes the file again (a write replaces the object whole) and the
email goes once (its own idempotency key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import db.reports
from db.reports import CONTACT_COLUMNS, ContactFilters
from jobs.csv_cells import csv_lines
from jobs.policies import retrying
from jobs.services import Services
from millrace import Connection, JobContext, exponential, job
from millrace.storage import rechunk
from producers import emails as intents
from producers.reports import EXPORT_REPORT, ReportArgs

EXPORT_POLICY = retrying(5, exponential(first_s=5, factor=3, cap_s=300))
#: how often the export reports progress, in rows
PROGRESS_EVERY = 5_000


def report_key(report_id: int) -> str:
    return f"reports/{report_id}/report.csv"


async def report_dead(ctx: JobContext[Services], args: ReportArgs, reason: str) -> None:
    await db.reports.mark_report_failed(ctx.services.db, args.report_id, reason)


@job(EXPORT_REPORT, retry=EXPORT_POLICY, timeout_s=1800, on_dead=report_dead)
async def export_report(ctx: JobContext[Services], args: ReportArgs) -> None:
    services = ctx.services
    report = await db.reports.get_report(services.db, args.report_id)
    if report.status in ("completed", "failed"):
        return
    filters = ContactFilters.model_validate(report.filters)
    async with services.db.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # one snapshot for the count and the rows: the progress total is the file's row count
        total = await db.reports.count_contacts(conn, report.user_id, filters)
        await db.reports.mark_report_processing(services.db, report.id, total)
        lines = _csv(ctx, conn, report.user_id, filters, total)
        await services.storage.put(report_key(report.id), rechunk(lines), content_type="text/csv")
    async with services.db.acquire() as conn, conn.transaction():
        await db.reports.mark_report_completed(conn, report.id, storage_key=report_key(report.id), total_rows=total)
        await ctx.jobs.enqueue(
            intents.SEND_REPORT_READY_EMAIL, intents.ReportReadyEmailArgs(report_id=report.id), conn=conn
        )


async def _csv(
    ctx: JobContext[Any], conn: Connection, user_id: int, filters: ContactFilters, total: int
) -> AsyncIterator[bytes]:
    for line in csv_lines([CONTACT_COLUMNS]):
        yield line
    done = 0
    async for row in db.reports.stream_contacts(conn, user_id, filters):
        for line in csv_lines([row]):
            yield line
        done += 1
        if done % PROGRESS_EVERY == 0:
            ctx.progress(done, total, "writing the file")
    ctx.progress(done, total, "written")
