"""Contact imports over HTTP: upload a CSV or .xlsx file as the request body, then follow its status.

`POST /imports?filename=contacts.csv` streams the body to storage (413 past IMPORT_MAX_BYTES), records
the import and enqueues it in one transaction, and answers 202 at once. `GET /imports/{id}` shows its
status, progress and summary, with a signed link to the report of rejected rows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

import db.imports
from producers.imports import enqueue_import
from web.auth import CurrentUser
from web.fields import Line, PathId
from web.state import AppState, state_of
from web.uploads import store_upload

_KINDS: dict[str, Literal["csv", "xlsx"]] = {".csv": "csv", ".txt": "csv", ".tsv": "csv", ".xlsx": "xlsx"}
#: the upload is the raw request body, documented for the API docs (FastAPI sees no body parameter)
OPENAPI_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                "schema": {"type": "string", "format": "binary"}
            },
        },
    }
}
#: how long the link to an import's error report stays valid
REPORT_LINK_VALID_S = 24 * 3600


class ImportCreated(BaseModel):
    id: int
    status: Literal["pending"]
    status_url: str


class ImportProgress(BaseModel):
    done: int
    total: int | None


class ImportView(BaseModel):
    id: int
    filename: str
    status: db.imports.ImportStatus
    progress: ImportProgress | None
    total_rows: int | None
    inserted_rows: int | None
    rejected_rows: int | None
    notes: list[str]
    failure: str | None
    #: a signed link to the rejected rows, each with its line and reason (CSV)
    error_report_url: str | None
    created_at: datetime
    finished_at: datetime | None


async def create_import(
    request: Request, caller: CurrentUser, filename: Annotated[Line, Query(max_length=200)]
) -> ImportCreated:
    kind = _KINDS.get(PurePosixPath(filename).suffix.lower())
    if kind is None:
        raise HTTPException(415, f"upload a file named .csv, .txt, .tsv or .xlsx, not {filename!r}")
    state = state_of(request)
    key, size = await store_upload(state, request, folder="imports/uploads", max_bytes=state.settings.import_max_bytes)
    async with state.pool.acquire() as conn, conn.transaction():
        import_id = await db.imports.insert_import(
            conn, user_id=caller, filename=filename, kind=kind, upload_key=key, size_bytes=size
        )
        await enqueue_import(state.jobs, import_id=import_id, conn=conn)
    return ImportCreated(id=import_id, status="pending", status_url=f"/imports/{import_id}")


async def get_import(import_id: PathId, caller: CurrentUser, request: Request) -> ImportView:
    state = state_of(request)
    found = await db.imports.find_import(state.pool, import_id)
    if found is None or found.user_id != caller:  # someone else's import is not there, as far as you know
        raise HTTPException(404, "no such import")
    return ImportView(
        id=found.id,
        filename=found.filename,
        status=found.status,
        progress=await _progress(state, found),
        total_rows=found.total_rows,
        inserted_rows=found.inserted_rows,
        rejected_rows=found.rejected_rows,
        notes=found.notes,
        failure=found.failure,
        error_report_url=_report_link(state, found),
        created_at=found.created_at,
        finished_at=found.finished_at,
    )


async def _progress(state: AppState, found: db.imports.Import) -> ImportProgress | None:
    if found.status == "completed":
        return ImportProgress(done=found.total_rows or 0, total=found.total_rows)
    if found.group_id is None:
        return None
    group = await state.jobs.group_status(found.group_id)
    return None if group is None else ImportProgress(done=group.progress_done, total=found.total_rows)


def _report_link(state: AppState, found: db.imports.Import) -> str | None:
    if found.error_report_key is None or state.links is None:
        return None
    name = f"{PurePosixPath(found.filename).stem[:100]}-rejected-rows.csv"  # a link's name: 200 at most
    return state.links.link(found.error_report_key, name=name, valid_s=REPORT_LINK_VALID_S)
