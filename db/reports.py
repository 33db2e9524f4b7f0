"""Report exports, and the queries they stream: a server-side cursor, never the whole result in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from millrace import Connection, Executor, NotFound, unstorable_text

ReportStatus = Literal["pending", "processing", "completed", "failed"]
ReportType = Literal["contacts"]

CONTACT_COLUMNS = ("id", "email", "name", "company", "phone", "created_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    id: int
    user_id: int
    report_type: ReportType
    filters: dict[str, Any]
    status: ReportStatus
    total_rows: int | None
    storage_key: str | None
    failure: str | None
    job_id: str | None
    created_at: datetime
    finished_at: datetime | None


def _storable(text: str) -> str:
    problem = unstorable_text(text)
    if problem is not None:
        raise ValueError(problem)
    return text


class ContactFilters(BaseModel):
    """Which contacts a contacts report holds; kept with the report as JSON, read back by the export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company: Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)] | None = None
    created_after: date | None = None
    email_domain: Annotated[str, StringConstraints(max_length=253, pattern=r"^[A-Za-z0-9.-]+$")] | None = None


async def insert_report(conn: Executor, *, user_id: int, report_type: ReportType, filters: dict[str, Any]) -> int:
    report_id: int = await conn.fetchval(
        "INSERT INTO reports (user_id, report_type, filters) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        report_type,
        filters,
    )
    return report_id


async def find_report(conn: Executor, report_id: int) -> Report | None:
    row = await conn.fetchrow(
        """SELECT id, user_id, report_type, filters, status, total_rows, storage_key, failure, job_id, created_at,
                  finished_at
           FROM reports WHERE id = $1""",
        report_id,
    )
    return None if row is None else Report(**dict(row))


async def get_report(conn: Executor, report_id: int) -> Report:
    found = await find_report(conn, report_id)
    if found is None:
        raise NotFound("report", report_id)
    return found


async def set_report_job(conn: Executor, report_id: int, job_id: str) -> None:
    await conn.execute("UPDATE reports SET job_id = $2 WHERE id = $1", report_id, job_id)


async def mark_report_processing(conn: Executor, report_id: int, total_rows: int) -> None:
    await conn.execute(
        """UPDATE reports SET status = 'processing', total_rows = $2
           WHERE id = $1 AND status IN ('pending', 'processing')""",
        report_id,
        total_rows,
    )


async def mark_report_failed(conn: Executor, report_id: int, failure: str) -> None:
    await conn.execute(
        """UPDATE reports SET status = 'failed', failure = $2, finished_at = now()
           WHERE id = $1 AND status IN ('pending', 'processing')""",
        report_id,
        failure[:1000],
    )


async def mark_report_completed(conn: Executor, report_id: int, *, storage_key: str, total_rows: int) -> bool:
    done = await conn.fetchval(
        """UPDATE reports SET status = 'completed', storage_key = $2, total_rows = $3, finished_at = now()
           WHERE id = $1 AND status IN ('pending', 'processing') RETURNING true""",
        report_id,
        storage_key,
        total_rows,
    )
    return bool(done)


_CONTACTS_WHERE = """user_id = $1
    AND ($2::text IS NULL OR company = $2)
    AND ($3::date IS NULL OR created_at >= $3)
    AND ($4::text IS NULL OR lower(split_part(email, '@', 2)) = lower($4))"""


def _contact_params(user_id: int, filters: ContactFilters) -> tuple[Any, ...]:
    return user_id, filters.company, filters.created_after, filters.email_domain


async def count_contacts(conn: Executor, user_id: int, filters: ContactFilters) -> int:
    count: int = await conn.fetchval(
        f"SELECT count(*) FROM contacts WHERE {_CONTACTS_WHERE}", *_contact_params(user_id, filters)
    )
    return count


async def stream_contacts(conn: Connection, user_id: int, filters: ContactFilters) -> AsyncIterator[tuple[Any, ...]]:
    """The user's contacts matching `filters`, in id order, through a server-side cursor (in a transaction)."""
    query = f"SELECT {', '.join(CONTACT_COLUMNS)} FROM contacts WHERE {_CONTACTS_WHERE} ORDER BY id"
    async for row in conn.cursor(query, *_contact_params(user_id, filters), prefetch=2000):
        yield tuple(row.values())
