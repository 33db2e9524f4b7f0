"""Producers for quotation PDFs (the documents queue)."""

from __future__ import annotations

from millrace import Connection, EnqueuedJob, JobArgs, JobClient, JobRef
from producers.fields import RowId
from queues import DOCUMENTS


class QuotationArgs(JobArgs):
    quotation_id: RowId


#: fill the DOCX template, convert it to PDF, store it and e-mail it to the customer
RENDER_QUOTATION_PDF = JobRef("render_quotation_pdf", DOCUMENTS, QuotationArgs)


async def enqueue_quotation_pdf(client: JobClient, *, quotation_id: int, conn: Connection) -> EnqueuedJob:
    """Render and send a quotation recorded in `conn`'s transaction; never run if it rolls back."""
    return await client.enqueue(RENDER_QUOTATION_PDF, QuotationArgs(quotation_id=quotation_id), conn=conn)
