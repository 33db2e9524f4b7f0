"""A program a job runs that is not installed is a configuration error: the job is dead after one attempt
with the program and its setting named, and the worker of its queue says so when it starts."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

import db.documents
import db.quotations
import db.users
import queues
from millrace import JobClient, Pool, store
from millrace.storage import open_storage, put_bytes
from producers.documents import enqueue_document_analysis
from producers.quotations import enqueue_quotation_pdf
from settings import Settings
from tests.jobs.workers import run_app_workers


async def dead_after_one_attempt(pool: Pool, job_id: str) -> str:
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.attempts) == ("dead", 1), job
    return f"{job.last_error_type}: {job.last_error}"


def warnings_of(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "tools_missing"]


async def enqueue_quotation(client: JobClient, pool: Pool) -> tuple[int, str]:
    user = await db.users.insert_user(pool, email="ada@example.com", name="Ada")
    async with pool.acquire() as conn, conn.transaction():
        quotation_id = await db.quotations.insert_quotation(
            conn,
            user_id=user.id,
            customer_name="Ada Ltd",
            customer_email="ada@customer.example",
            currency="EUR",
            lines=[{"description": "Engine", "quantity": 1, "unit_price_cents": 1000}],
            subtotal_cents=1000,
            tax_rate=Decimal("20"),
            tax_cents=200,
            total_cents=1200,
        )
        enqueued = await enqueue_quotation_pdf(client, quotation_id=quotation_id, conn=conn)
    return quotation_id, enqueued.id


async def test_a_quotation_without_libreoffice_is_dead_at_once_naming_the_program(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    quotation_id, job_id = await enqueue_quotation(client, pool)
    missing = str(tmp_path / "no-such-folder" / "soffice")
    settings = Settings(
        database_url=database_url, redis_url=redis_url, storage_folder=tmp_path / "storage", soffice_command=[missing]
    )
    with structlog.testing.capture_logs() as logs:
        await run_app_workers(settings, queues.DOCUMENTS)
    reason = (
        f"LibreOffice (soffice) is not installed: {missing!r} cannot be run"
        " (it is settings.soffice_command, SOFFICE_COMMAND in the environment)"
    )
    assert await dead_after_one_attempt(pool, job_id) == f"ProgramMissing: {reason}"
    quotation = await db.quotations.get_quotation(pool, quotation_id)
    assert (quotation.status, quotation.failure) == ("failed", f"ProgramMissing: {reason}")
    [warning] = warnings_of(logs)
    assert warning["log_level"] == "warning"
    assert warning["queue"] == "documents"
    assert warning["programs"] == ["LibreOffice (soffice)"]
    assert warning["commands"] == {"soffice_command": missing}
    assert warning["jobs"] == ["render_quotation_pdf"]


async def test_a_pdf_without_pdftotext_is_dead_at_once_naming_the_program(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    user = await db.users.insert_user(pool, email="ada@example.com", name="Ada")
    async with open_storage(tmp_path / "storage") as storage:
        size = await put_bytes(storage, "documents/a.pdf", b"%PDF-1.4 never read")
    async with pool.acquire() as conn, conn.transaction():
        document_id = await db.documents.insert_document(
            conn, user_id=user.id, filename="a.pdf", kind="pdf", storage_key="documents/a.pdf", size_bytes=size
        )
        enqueued = await enqueue_document_analysis(client, document_id=document_id, conn=conn)
    missing = str(tmp_path / "no-such-folder" / "pdftotext")
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        storage_folder=tmp_path / "storage",
        ai_api_url="http://127.0.0.1:9/v1",  # never reached: the text comes first
        pdftotext_command=[missing],
    )
    with structlog.testing.capture_logs() as logs:
        await run_app_workers(settings, queues.AI)
    reason = (
        f"pdftotext (poppler-utils) is not installed: {missing!r} cannot be run"
        " (it is settings.pdftotext_command, PDFTOTEXT_COMMAND in the environment)"
    )
    assert await dead_after_one_attempt(pool, enqueued.id) == f"ProgramMissing: {reason}"
    document = await db.documents.get_document(pool, document_id)
    assert (document.status, document.failure) == ("failed", f"ProgramMissing: {reason}")
    [warning] = warnings_of(logs)
    assert (warning["queue"], warning["programs"]) == ("ai", ["pdftotext (poppler-utils)"])
    assert warning["commands"] == {"pdftotext_command": missing}


async def test_a_worker_whose_programs_are_there_warns_of_none(database_url: str, redis_url: str) -> None:
    """Each command is a program that exists (this Python), wherever it is: no warning line."""
    here = [sys.executable]
    settings = Settings(database_url=database_url, redis_url=redis_url, soffice_command=here, pdftotext_command=here)
    with structlog.testing.capture_logs() as logs:
        await run_app_workers(settings, queues.DOCUMENTS)
        await run_app_workers(settings, queues.AI)
    assert [e["event"] for e in logs].count("worker_started") == 2
    assert warnings_of(logs) == []


async def test_a_queue_whose_jobs_run_no_program_warns_of_none(database_url: str, redis_url: str) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, soffice_command=["/no/such/soffice"])
    with structlog.testing.capture_logs() as logs:
        await run_app_workers(settings, queues.EMAILS)
    assert [e["event"] for e in logs].count("worker_started") == 1
    assert warnings_of(logs) == []
