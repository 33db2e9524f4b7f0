"""Contact imports: split the upload into chunks (fan-out), import each chunk as a child job, and write
the summary once, when the last chunk has ended (fan-in).

Every step may run twice (a worker killed mid-way): a contact row is keyed by its import and line, so a
chunk run again adds only what the first run had not; the fan-out happens once (`ctx.first_time`); the
summary is written only while the import is processing.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import db.imports
from db.imports import ContactRow, Rejection
from jobs.csv_cells import csv_lines
from jobs.import_files import Record, UnreadableFile, open_records
from jobs.import_rows import header_problems, to_contact
from jobs.policies import retrying
from jobs.services import Services
from millrace import JobContext, exponential, job
from millrace.storage import download, file_chunks, read_lines, rechunk
from producers.imports import FINISH_IMPORT, IMPORT_CHUNK, SPLIT_IMPORT, ImportArgs, ImportChunkArgs
from producers.notifications import enqueue_notification

#: rows a child job imports: a chunk takes seconds, and a worker killed in it repeats only that chunk
CHUNK_ROWS = 10_000
#: rows written in one statement
BATCH_ROWS = 1_000
IMPORT_POLICY = retrying(5, exponential(first_s=2, factor=3, cap_s=120))


def chunk_key(import_id: int, chunk: int) -> str:
    return f"imports/{import_id}/chunks/{chunk:05d}.jsonl"


@dataclass(frozen=True, slots=True)
class Split:
    columns: list[str]
    notes: list[str]
    #: (local file, rows) of each chunk, in order
    chunks: list[tuple[Path, int]]

    @property
    def total_rows(self) -> int:
        return sum(rows for _, rows in self.chunks)


async def import_dead(ctx: JobContext[Services], args: ImportArgs, reason: str) -> None:
    """The split or the summary died for good: the import shows failed with the reason. (A dead chunk is
    the summary's to report: the group ends with it.)"""
    await db.imports.mark_import_failed(ctx.services.db, args.import_id, f"the import stopped: {reason}")


@job(SPLIT_IMPORT, retry=IMPORT_POLICY, timeout_s=1800, on_dead=import_dead)
async def split_import(ctx: JobContext[Services], args: ImportArgs) -> None:
    services = ctx.services
    found = await db.imports.get_import(services.db, args.import_id)
    if found.status != "pending":  # split already (this is a second run after the commit), or ended
        return
    with tempfile.TemporaryDirectory(prefix="millrace-import-") as folder:
        upload = Path(folder) / f"upload.{found.kind}"  # openpyxl goes by the suffix
        await download(services.storage, found.upload_key, upload)
        try:
            split = await asyncio.to_thread(split_file, upload, found.kind, Path(folder), ctx.progress)
        except UnreadableFile as error:
            await db.imports.mark_import_failed(services.db, found.id, error.reason)
            return
        problems, notes = header_problems(split.columns)
        if problems:
            await db.imports.mark_import_failed(services.db, found.id, "; ".join(problems))
            return
        for number, (path, _) in enumerate(split.chunks):
            await services.storage.put(chunk_key(found.id, number), file_chunks(path))
    chunk_args = [ImportChunkArgs(import_id=found.id, chunk=n, rows=rows) for n, (_, rows) in enumerate(split.chunks)]
    async with services.db.acquire() as conn, conn.transaction():
        if not await ctx.first_time(conn, "fan_out"):
            return
        group = await ctx.jobs.enqueue_group(
            IMPORT_CHUNK, chunk_args, then=(FINISH_IMPORT, ImportArgs(import_id=found.id)), conn=conn
        )
        await db.imports.mark_import_processing(
            conn,
            found.id,
            columns=split.columns,
            total_rows=split.total_rows,
            chunks=len(chunk_args),
            group_id=group.id,
            notes=[*notes, *split.notes],
        )


def split_file(upload: Path, kind: str, folder: Path, progress: Callable[[int, int | None, str], None]) -> Split:
    """Read the upload once and write its records as chunk files of CHUNK_ROWS records each (JSON lines:
    line, cells, problem). Runs in a thread: the parsers are synchronous."""
    header, records = open_records(upload, "xlsx" if kind == "xlsx" else "csv")
    chunks: list[tuple[Path, int]] = []
    out, rows = None, 0
    try:
        for record in records:
            if out is None:
                path = folder / f"chunk-{len(chunks):05d}.jsonl"
                out, rows = path.open("w", encoding="utf-8"), 0
            out.write(json.dumps([record.line, record.cells, record.problem]) + "\n")
            rows += 1
            if rows == CHUNK_ROWS:
                out.close()
                chunks.append((Path(out.name), rows))
                out = None
                progress(len(chunks) * CHUNK_ROWS, None, "reading the file")
        if out is not None:
            out.close()
            chunks.append((Path(out.name), rows))
            out = None
    finally:
        if out is not None:
            out.close()
    return Split(columns=header.columns, notes=header.notes, chunks=chunks)


@job(IMPORT_CHUNK, retry=IMPORT_POLICY, timeout_s=900)
async def import_chunk(ctx: JobContext[Services], args: ImportChunkArgs) -> None:
    services = ctx.services
    found = await db.imports.get_import(services.db, args.import_id)
    if found.status != "processing" or found.columns is None:
        return
    contacts: list[ContactRow] = []
    rejections: list[Rejection] = []
    done = 0
    async for line in read_lines(services.storage, chunk_key(found.id, args.chunk)):
        number, cells, problem = json.loads(line)
        outcome = to_contact(Record(line=number, cells=cells, problem=problem), found.columns)
        if isinstance(outcome, ContactRow):
            contacts.append(outcome)
        else:
            rejections.append(outcome)
        done += 1
        if len(contacts) + len(rejections) >= BATCH_ROWS:
            await _write(services, found.user_id, found.id, contacts, rejections)
            ctx.progress(done, args.rows, f"chunk {args.chunk + 1} of {found.chunks}")
    await _write(services, found.user_id, found.id, contacts, rejections)
    ctx.progress(done, args.rows, f"chunk {args.chunk + 1} of {found.chunks}")


async def _write(
    services: Services, user_id: int, import_id: int, contacts: list[ContactRow], rejections: list[Rejection]
) -> None:
    async with services.db.acquire() as conn, conn.transaction():
        if contacts:
            await db.imports.insert_contacts(conn, user_id=user_id, import_id=import_id, rows=contacts)
        if rejections:
            await db.imports.insert_rejections(conn, import_id, rejections)
    contacts.clear()
    rejections.clear()


@job(FINISH_IMPORT, retry=IMPORT_POLICY, timeout_s=900, on_dead=import_dead)
async def finish_import(ctx: JobContext[Services], args: ImportArgs) -> None:
    services = ctx.services
    found = await db.imports.get_import(services.db, args.import_id)
    if found.status != "processing" or found.group_id is None:
        return
    inserted, rejected = await db.imports.count_outcomes(services.db, found.id)
    report_key = None
    if rejected:
        report_key = f"imports/{found.id}/rejected-rows.csv"
        await services.storage.put(report_key, rechunk(_error_report(services, found.id)), content_type="text/csv")
    group = await ctx.jobs.group_status(found.group_id)
    async with services.db.acquire() as conn, conn.transaction():
        if group is not None and group.dead:
            reason = f"{group.dead} of {group.total} chunks failed ({group.an_error}); {inserted} rows were imported"
            await db.imports.mark_import_failed(conn, found.id, reason)
            title, body = f"Your import of {found.filename[:100]} failed", reason
        else:
            await db.imports.mark_import_completed(
                conn, found.id, inserted_rows=inserted, rejected_rows=rejected, error_report_key=report_key
            )
            title, body = f"Your import of {found.filename[:100]} is done", f"{inserted} rows in, {rejected} rejected"
        # in the summary's transaction: the user hears of it once, and only of what is on record
        await enqueue_notification(
            ctx.jobs, user_id=found.user_id, event_key=f"import:{found.id}:ended", title=title, body=body, conn=conn
        )
    for number in range(found.chunks or 0):
        await services.storage.delete(chunk_key(found.id, number))


async def _error_report(services: Services, import_id: int) -> AsyncIterator[bytes]:
    for line in csv_lines([("line", "reason", "row")]):
        yield line
    after = 0
    while page := await db.imports.list_rejections(services.db, import_id, after_line=after, limit=5000):
        for line in csv_lines((r.line, r.reason, r.raw) for r in page):
            yield line
        after = page[-1].line
