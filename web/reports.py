"""Report exports over HTTP: ask for a report, follow it, download it through a signed link.

`POST /reports` records the request and enqueues the export in one transaction and answers 202 at once;
the user is e-mailed a link when the file is ready, and `GET /reports/{id}` shows status, progress and
(once completed) a short-lived download link.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import HTTPException, Request
from pydantic import BaseModel, ConfigDict

import db.reports
from db.reports import ContactFilters
from producers.reports import enqueue_report_export
from web.auth import CurrentUser
from web.fields import PathId
from web.state import AppState, state_of

#: the link GET /reports/{id} shows: short, since the page can be fetched again for a fresh one
LINK_VALID_S = 3600


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    report_type: Literal["contacts"]
    filters: ContactFilters = ContactFilters()


class ReportCreated(BaseModel):
    id: int
    status: Literal["pending"]
    status_url: str


class ReportProgress(BaseModel):
    done: int
    total: int | None


class ReportView(BaseModel):
    id: int
    report_type: str
    status: db.reports.ReportStatus
    progress: ReportProgress | None
    total_rows: int | None
    download_url: str | None
    failure: str | None
    created_at: datetime
    finished_at: datetime | None


async def create_report(body: ReportRequest, caller: CurrentUser, request: Request) -> ReportCreated:
    state = state_of(request)
    filters = body.filters.model_dump(mode="json", exclude_none=True)
    async with state.pool.acquire() as conn, conn.transaction():
        report_id = await db.reports.insert_report(conn, user_id=caller, report_type=body.report_type, filters=filters)
        job = await enqueue_report_export(state.jobs, report_id=report_id, conn=conn)
        await db.reports.set_report_job(conn, report_id, job.id)
    return ReportCreated(id=report_id, status="pending", status_url=f"/reports/{report_id}")


async def get_report(report_id: PathId, caller: CurrentUser, request: Request) -> ReportView:
    state = state_of(request)
    found = await db.reports.find_report(state.pool, report_id)
    if found is None or found.user_id != caller:
        raise HTTPException(404, "no such report")
    return ReportView(
        id=found.id,
        report_type=found.report_type,
        status=found.status,
        progress=await _progress(state, found),
        total_rows=found.total_rows,
        download_url=_link(state, found),
        failure=found.failure,
        created_at=found.created_at,
        finished_at=found.finished_at,
    )


async def _progress(state: AppState, found: db.reports.Report) -> ReportProgress | None:
    if found.status == "completed":
        return ReportProgress(done=found.total_rows or 0, total=found.total_rows)
    if found.status != "processing" or found.job_id is None:
        return None
    job = await state.jobs.find_job(found.job_id)
    done = 0 if job is None or job.progress is None else job.progress.done
    return ReportProgress(done=done, total=found.total_rows)


def _link(state: AppState, found: db.reports.Report) -> str | None:
    if found.storage_key is None or state.links is None:
        return None
    name = f"{found.report_type}-report-{found.id}.csv"
    return state.links.link(found.storage_key, name=name, valid_s=LINK_VALID_S)
