"""AI document processing over HTTP: upload a PDF or text document, read back its structured summary and
what it cost in tokens; `GET /ai/usage` shows the tokens spent a day."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel

import db.documents
from producers.documents import enqueue_document_analysis
from web.auth import CurrentUser
from web.fields import Line, PathId
from web.state import state_of
from web.uploads import store_upload

_KINDS: dict[str, Literal["pdf", "text"]] = {".pdf": "pdf", ".txt": "text", ".md": "text"}

#: the upload is the raw request body
OPENAPI_UPLOAD = {
    "requestBody": {
        "required": True,
        "content": {
            "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            "text/plain": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class DocumentAccepted(BaseModel):
    id: int
    status: Literal["pending"]
    status_url: str


class TokenUsage(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int


class DocumentView(BaseModel):
    id: int
    filename: str
    status: db.documents.DocumentStatus
    result: dict[str, Any] | None
    failure: str | None
    usage: TokenUsage
    created_at: datetime
    finished_at: datetime | None


class DayUsage(TokenUsage):
    day: date


async def upload_document(
    request: Request, caller: CurrentUser, filename: Annotated[Line, Query(max_length=200)]
) -> DocumentAccepted:
    kind = _KINDS.get(PurePosixPath(filename).suffix.lower())
    if kind is None:
        raise HTTPException(415, f"upload a .pdf, .txt or .md document, not {filename!r}")
    state = state_of(request)
    key, size = await store_upload(state, request, folder="documents", max_bytes=state.settings.document_max_bytes)
    async with state.pool.acquire() as conn, conn.transaction():
        document_id = await db.documents.insert_document(
            conn, user_id=caller, filename=filename, kind=kind, storage_key=key, size_bytes=size
        )
        job = await enqueue_document_analysis(state.jobs, document_id=document_id, conn=conn)
        await db.documents.set_document_job(conn, document_id, job.id)
    return DocumentAccepted(id=document_id, status="pending", status_url=f"/documents/{document_id}")


async def get_document(document_id: PathId, caller: CurrentUser, request: Request) -> DocumentView:
    state = state_of(request)
    found = await db.documents.find_document(state.pool, document_id)
    if found is None or found.user_id != caller:
        raise HTTPException(404, "no such document")
    usage = await db.documents.document_usage(state.pool, found.id)
    return DocumentView(
        id=found.id,
        filename=found.filename,
        status=found.status,
        result=found.result,
        failure=found.failure,
        usage=TokenUsage(
            calls=usage.calls, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
        ),
        created_at=found.created_at,
        finished_at=found.finished_at,
    )


async def ai_usage(
    caller: CurrentUser, request: Request, days: Annotated[int, Query(ge=1, le=366)] = 30
) -> list[DayUsage]:
    rows = await db.documents.daily_usage(state_of(request).pool, caller, days=days)
    return [DayUsage(**dataclasses.asdict(r)) for r in rows]
