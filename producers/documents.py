"""Producers for AI document processing (the ai queue)."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import AI


class DocumentArgs(JobArgs):
    document_id: RowId


#: extract the text, ask the model for a structured summary, validate and store it
ANALYZE_DOCUMENT = JobRef("analyze_document", AI, DocumentArgs)


async def enqueue_document_analysis(client: JobClient, *, document_id: int, conn: Connection) -> EnqueuedJob:
    return await client.enqueue(ANALYZE_DOCUMENT, DocumentArgs(document_id=document_id), conn=conn)
