"""Quotation PDFs: fill the DOCX template (docxtpl, autoescaped), convert it with LibreOffice, store the
PDF, e-mail it to the customer as an attachment, mark the quotation sent.

A quotation is never lost: when its last attempt fails (LibreOffice hung, crashed or made nothing, a
template that cannot be filled, a mail server away for good), it shows failed with the reason, and a
person can try it again (POST /quotations/{id}/retry).
"""

from __future__ import annotations

import asyncio
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import structlog
from docx.opc.exceptions import PackageNotFoundError
from docxtpl import DocxTemplate

import db.quotations
from db.quotations import Quotation
from jobs.emails import Attachment, send_once
from jobs.libreoffice import LIBREOFFICE, ConversionFailed, docx_to_pdf
from jobs.pdf import format_amount
from jobs.policies import retrying
from jobs.programs import ProgramsNeeded
from jobs.services import Services
from millrace import GiveUp, JobContext, exponential, job
from millrace.storage import put_bytes
from producers.quotations import RENDER_QUOTATION_PDF, QuotationArgs

log = structlog.get_logger(__name__)

TEMPLATE = Path(__file__).resolve().parent / "templates" / "documents" / "quotation.docx"
QUOTATION_POLICY = retrying(3, exponential(first_s=2, factor=3, cap_s=60))
#: its worker names the programs missing when it starts (jobs/worker.py)
PROGRAMS = ProgramsNeeded(job=RENDER_QUOTATION_PDF, programs=(LIBREOFFICE,))


class TemplateProblem(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def quotation_dead(ctx: JobContext[Services], args: QuotationArgs, reason: str) -> None:
    """However the job died (its worker killed on the last attempt, a timeout), the quotation says so."""
    await db.quotations.mark_quotation_failed(ctx.services.db, args.quotation_id, reason)


@job(RENDER_QUOTATION_PDF, retry=QUOTATION_POLICY, timeout_s=300, on_dead=quotation_dead)
async def render_quotation_pdf(ctx: JobContext[Services], args: QuotationArgs) -> None:
    services = ctx.services
    quotation = await db.quotations.get_quotation(services.db, args.quotation_id)
    if quotation.status != "pending":
        return
    try:
        await _render_and_send(ctx, quotation)
    except TemplateProblem as error:  # the same on every attempt
        await db.quotations.mark_quotation_failed(services.db, quotation.id, error.reason)
        raise GiveUp(error.reason) from None
    except Exception as error:
        if ctx.run_attempt >= ctx.max_attempts or isinstance(error, GiveUp):
            reason = error.reason if isinstance(error, ConversionFailed) else f"{type(error).__name__}: {error}"
            await db.quotations.mark_quotation_failed(services.db, quotation.id, reason)
        raise


async def _render_and_send(ctx: JobContext[Services], quotation: Quotation) -> None:
    services = ctx.services
    settings = services.settings
    with tempfile.TemporaryDirectory(prefix="millrace-quotation-") as folder:
        docx = Path(folder) / f"quotation-{quotation.id}.docx"
        template = settings.quotation_template or TEMPLATE
        await asyncio.to_thread(fill_template, template, quotation_context(quotation), docx)
        pdf = await docx_to_pdf(docx, timeout_s=settings.pdf_convert_timeout_s, command=settings.soffice_command)
    key = f"quotations/{quotation.id}/quotation-{quotation.id}.pdf"
    await put_bytes(services.storage, key, pdf, content_type="application/pdf")
    attachment = Attachment(
        filename=f"quotation-{quotation.id}.pdf", content=pdf, maintype="application", subtype="pdf"
    )
    context = {"quotation": quotation, "total": format_amount(quotation.total_cents, quotation.currency)}
    await send_once(
        ctx, "quotation", to=quotation.customer_email, key=str(quotation.id), context=context, attachments=[attachment]
    )
    await db.quotations.mark_quotation_sent(services.db, quotation.id, key)
    log.info("quotation_sent", quotation_id=quotation.id, pdf_bytes=len(pdf))


def quotation_context(quotation: Quotation) -> dict[str, Any]:
    currency = quotation.currency

    def money(cents: int) -> str:
        return format_amount(cents, currency)

    lines = [
        {
            "description": line["description"],
            "quantity": line["quantity"],
            "unit_price": money(line["unit_price_cents"]),
            "amount": money(line["quantity"] * line["unit_price_cents"]),
        }
        for line in quotation.lines
    ]
    return {
        "quotation": {
            "number": f"Q-{quotation.id:06d}",
            "customer_name": quotation.customer_name,
            "customer_email": quotation.customer_email,
            "issued": f"{datetime.now(UTC):%Y-%m-%d}",
            "subtotal": money(quotation.subtotal_cents),
            "tax_rate": f"{quotation.tax_rate}%",
            "tax": money(quotation.tax_cents),
            "total": money(quotation.total_cents),
        },
        "lines": lines,
    }


def fill_template(template: Path, context: dict[str, Any], out: Path) -> None:
    """The DOCX with the values in; autoescaped, so `&` and `<` in a customer's name stay as typed."""
    try:
        document = DocxTemplate(str(template))
        document.render(context, autoescape=True)
        document.save(str(out))
    except (jinja2.TemplateError, PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
        raise TemplateProblem(f"the quotation template cannot be filled: {type(error).__name__}: {error}") from None
