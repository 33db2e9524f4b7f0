"""Contact imports: the import's record, the contacts it inserts and the rows it rejects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from millrace import Executor, NotFound

ImportStatus = Literal["pending", "processing", "completed", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Import:
    id: int
    user_id: int
    filename: str
    kind: Literal["csv", "xlsx"]
    upload_key: str
    size_bytes: int
    status: ImportStatus
    columns: list[str] | None
    total_rows: int | None
    chunks: int | None
    group_id: str | None
    inserted_rows: int | None
    rejected_rows: int | None
    notes: list[str]
    failure: str | None
    error_report_key: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRow:
    line: int
    email: str
    name: str
    company: str | None
    phone: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    line: int
    reason: str
    raw: str


_COLUMNS = """id, user_id, filename, kind, upload_key, size_bytes, status, columns, total_rows, chunks, group_id,
    inserted_rows, rejected_rows, notes, failure, error_report_key, created_at, finished_at"""


async def insert_import(
    conn: Executor, *, user_id: int, filename: str, kind: str, upload_key: str, size_bytes: int
) -> int:
    import_id: int = await conn.fetchval(
        """INSERT INTO imports (user_id, filename, kind, upload_key, size_bytes) VALUES ($1, $2, $3, $4, $5)
           RETURNING id""",
        user_id,
        filename,
        kind,
        upload_key,
        size_bytes,
    )
    return import_id


async def find_import(conn: Executor, import_id: int) -> Import | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM imports WHERE id = $1", import_id)
    return None if row is None else Import(**dict(row))


async def get_import(conn: Executor, import_id: int) -> Import:
    found = await find_import(conn, import_id)
    if found is None:
        raise NotFound("import", import_id)
    return found


async def mark_import_processing(
    conn: Executor,
    import_id: int,
    *,
    columns: Sequence[str],
    total_rows: int,
    chunks: int,
    group_id: str,
    notes: Sequence[str],
) -> None:
    await conn.execute(
        """UPDATE imports SET status = 'processing', columns = $2, total_rows = $3, chunks = $4, group_id = $5,
               notes = $6
           WHERE id = $1 AND status = 'pending'""",
        import_id,
        list(columns),
        total_rows,
        chunks,
        group_id,
        list(notes),
    )


async def mark_import_failed(conn: Executor, import_id: int, failure: str) -> bool:
    """Failed with its reason, unless it has ended already; True if this call ended it."""
    status = await conn.fetchval(
        """UPDATE imports SET status = 'failed', failure = $2, finished_at = now()
           WHERE id = $1 AND status IN ('pending', 'processing') RETURNING status""",
        import_id,
        failure[:1000],
    )
    return status is not None


async def mark_import_completed(
    conn: Executor, import_id: int, *, inserted_rows: int, rejected_rows: int, error_report_key: str | None
) -> bool:
    status = await conn.fetchval(
        """UPDATE imports SET status = 'completed', inserted_rows = $2, rejected_rows = $3, error_report_key = $4,
               finished_at = now()
           WHERE id = $1 AND status = 'processing' RETURNING status""",
        import_id,
        inserted_rows,
        rejected_rows,
        error_report_key,
    )
    return status is not None


async def insert_contacts(conn: Executor, *, user_id: int, import_id: int, rows: Sequence[ContactRow]) -> None:
    """Insert each line once: a chunk run again after a crash adds only what the first run had not."""
    await conn.execute(
        """INSERT INTO contacts (user_id, import_id, line, email, name, company, phone)
           SELECT $1, $2, * FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::text[])
           ON CONFLICT (import_id, line) DO NOTHING""",
        user_id,
        import_id,
        [r.line for r in rows],
        [r.email for r in rows],
        [r.name for r in rows],
        [r.company for r in rows],
        [r.phone for r in rows],
    )


async def insert_rejections(conn: Executor, import_id: int, rejections: Sequence[Rejection]) -> None:
    await conn.execute(
        """INSERT INTO import_rejections (import_id, line, reason, raw)
           SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[])
           ON CONFLICT (import_id, line) DO NOTHING""",
        import_id,
        [r.line for r in rejections],
        [r.reason for r in rejections],
        [r.raw for r in rejections],
    )


async def count_outcomes(conn: Executor, import_id: int) -> tuple[int, int]:
    """(rows inserted, rows rejected) so far."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM contacts WHERE import_id = $1) AS inserted,
                  (SELECT count(*) FROM import_rejections WHERE import_id = $1) AS rejected""",
        import_id,
    )
    assert row is not None
    return int(row["inserted"]), int(row["rejected"])


async def list_rejections(conn: Executor, import_id: int, *, after_line: int, limit: int) -> list[Rejection]:
    rows = await conn.fetch(
        """SELECT line, reason, raw FROM import_rejections WHERE import_id = $1 AND line > $2
           ORDER BY line LIMIT $3""",
        import_id,
        after_line,
        limit,
    )
    return [Rejection(**dict(r)) for r in rows]
