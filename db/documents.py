"""Documents sent for AI processing, their structured results, and the provider calls they cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from millrace import Executor, NotFound

DocumentStatus = Literal["pending", "completed", "failed"]
CallOutcome = Literal["ok", "invalid", "rate_limited", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    id: int
    user_id: int
    filename: str
    kind: Literal["pdf", "text"]
    storage_key: str
    size_bytes: int
    status: DocumentStatus
    result: dict[str, Any] | None
    failure: str | None
    job_id: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DailyUsage(Usage):
    day: date


async def insert_document(
    conn: Executor, *, user_id: int, filename: str, kind: str, storage_key: str, size_bytes: int
) -> int:
    document_id: int = await conn.fetchval(
        """INSERT INTO documents (user_id, filename, kind, storage_key, size_bytes) VALUES ($1, $2, $3, $4, $5)
           RETURNING id""",
        user_id,
        filename,
        kind,
        storage_key,
        size_bytes,
    )
    return document_id


async def find_document(conn: Executor, document_id: int) -> Document | None:
    row = await conn.fetchrow(
        """SELECT id, user_id, filename, kind, storage_key, size_bytes, status, result, failure, job_id, created_at,
                  finished_at
           FROM documents WHERE id = $1""",
        document_id,
    )
    return None if row is None else Document(**dict(row))


async def get_document(conn: Executor, document_id: int) -> Document:
    found = await find_document(conn, document_id)
    if found is None:
        raise NotFound("document", document_id)
    return found


async def set_document_job(conn: Executor, document_id: int, job_id: str) -> None:
    await conn.execute("UPDATE documents SET job_id = $2 WHERE id = $1", document_id, job_id)


async def mark_document_completed(conn: Executor, document_id: int, result: dict[str, Any]) -> None:
    await conn.execute(
        """UPDATE documents SET status = 'completed', result = $2, failure = NULL, finished_at = now()
           WHERE id = $1 AND status = 'pending'""",
        document_id,
        result,
    )


async def mark_document_failed(conn: Executor, document_id: int, failure: str) -> None:
    await conn.execute(
        """UPDATE documents SET status = 'failed', failure = $2, finished_at = now()
           WHERE id = $1 AND status = 'pending'""",
        document_id,
        failure[:1000],
    )


async def record_call(
    conn: Executor,
    *,
    document_id: int,
    user_id: int,
    job_id: str,
    attempt: int,
    outcome: CallOutcome,
    prompt_tokens: int,
    completion_tokens: int,
) -> None:
    await conn.execute(
        """INSERT INTO ai_calls (document_id, user_id, job_id, attempt, outcome, prompt_tokens, completion_tokens)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        document_id,
        user_id,
        job_id,
        attempt,
        outcome,
        prompt_tokens,
        completion_tokens,
    )


async def document_usage(conn: Executor, document_id: int) -> Usage:
    row = await conn.fetchrow(
        """SELECT count(*) AS calls, coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
                  coalesce(sum(completion_tokens), 0) AS completion_tokens
           FROM ai_calls WHERE document_id = $1""",
        document_id,
    )
    assert row is not None
    return Usage(**dict(row))


async def daily_usage(conn: Executor, user_id: int, *, days: int) -> list[DailyUsage]:
    rows = await conn.fetch(
        """SELECT (called_at AT TIME ZONE 'UTC')::date AS day, count(*) AS calls,
                  sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
           FROM ai_calls WHERE user_id = $1 AND called_at > now() - make_interval(days => $2)
           GROUP BY 1 ORDER BY 1""",
        user_id,
        days,
    )
    return [DailyUsage(**dict(r)) for r in rows]
