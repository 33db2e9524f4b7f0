"""Quotations over HTTP: submit one and get 202 at once; its PDF is rendered and e-mailed in the background.

The totals are computed here from the lines (integer cents, tax rounded half up), never taken from the
client. `GET /quotations/{id}` shows pending, sent (with a link to the PDF) or failed with the reason;
`POST /quotations/{id}/retry` sends a failed one through again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

import db.quotations
from producers.quotations import enqueue_quotation_pdf
from web.auth import CurrentUser
from web.fields import Email, Line, PathId
from web.state import AppState, state_of

PDF_LINK_VALID_S = 3600
MAX_CENTS = 10**12


class QuotationLine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Line
    quantity: Annotated[int, Field(strict=True, ge=1, le=1_000_000)]
    unit_price_cents: Annotated[int, Field(strict=True, ge=0, le=MAX_CENTS)]


class QuotationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_name: Line
    customer_email: Email
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    tax_rate: Annotated[Decimal, Field(ge=0, le=100, max_digits=5, decimal_places=2)] = Decimal(0)
    lines: Annotated[list[QuotationLine], Field(min_length=1, max_length=200)]


class QuotationAccepted(BaseModel):
    id: int
    status: Literal["pending"]
    total_cents: int
    status_url: str


class QuotationView(BaseModel):
    id: int
    customer_name: str
    customer_email: str
    currency: str
    subtotal_cents: int
    tax_cents: int
    total_cents: int
    status: db.quotations.QuotationStatus
    failure: str | None
    pdf_url: str | None
    created_at: datetime
    sent_at: datetime | None


async def create_quotation(body: QuotationRequest, caller: CurrentUser, request: Request) -> QuotationAccepted:
    state = state_of(request)
    subtotal = sum(line.quantity * line.unit_price_cents for line in body.lines)
    tax = int((Decimal(subtotal) * body.tax_rate / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if subtotal + tax > MAX_CENTS:
        # a 422 of the documented shape (field problems), like any other invalid field
        problem = {
            "type": "value_error",
            "loc": ("body", "lines"),
            "msg": "the total is larger than this service accepts",
        }
        raise RequestValidationError([problem])
    async with state.pool.acquire() as conn, conn.transaction():
        quotation_id = await db.quotations.insert_quotation(
            conn,
            user_id=caller,
            customer_name=body.customer_name,
            customer_email=body.customer_email,
            currency=body.currency,
            lines=[line.model_dump() for line in body.lines],
            subtotal_cents=subtotal,
            tax_rate=body.tax_rate,
            tax_cents=tax,
            total_cents=subtotal + tax,
        )
        job = await enqueue_quotation_pdf(state.jobs, quotation_id=quotation_id, conn=conn)
        await db.quotations.set_quotation_job(conn, quotation_id, job.id)
    status_url = f"/quotations/{quotation_id}"
    return QuotationAccepted(id=quotation_id, status="pending", total_cents=subtotal + tax, status_url=status_url)


async def get_quotation(quotation_id: PathId, caller: CurrentUser, request: Request) -> QuotationView:
    state = state_of(request)
    found = await _own(state, quotation_id, caller)
    return QuotationView(
        id=found.id,
        customer_name=found.customer_name,
        customer_email=found.customer_email,
        currency=found.currency,
        subtotal_cents=found.subtotal_cents,
        tax_cents=found.tax_cents,
        total_cents=found.total_cents,
        status=found.status,
        failure=found.failure,
        pdf_url=_pdf_link(state, found),
        created_at=found.created_at,
        sent_at=found.sent_at,
    )


async def retry_quotation(quotation_id: PathId, caller: CurrentUser, request: Request) -> QuotationAccepted:
    state = state_of(request)
    found = await _own(state, quotation_id, caller)
    async with state.pool.acquire() as conn, conn.transaction():
        if not await db.quotations.mark_quotation_retried(conn, found.id):
            raise HTTPException(409, f"only a failed quotation can be tried again; this one is {found.status}")
        job = await enqueue_quotation_pdf(state.jobs, quotation_id=found.id, conn=conn)
        await db.quotations.set_quotation_job(conn, found.id, job.id)
    return QuotationAccepted(
        id=found.id, status="pending", total_cents=found.total_cents, status_url=f"/quotations/{found.id}"
    )


async def _own(state: AppState, quotation_id: int, caller: int) -> db.quotations.Quotation:
    found = await db.quotations.find_quotation(state.pool, quotation_id)
    if found is None or found.user_id != caller:
        raise HTTPException(404, "no such quotation")
    return found


def _pdf_link(state: AppState, found: db.quotations.Quotation) -> str | None:
    if found.pdf_key is None or state.links is None:
        return None
    return state.links.link(found.pdf_key, name=f"quotation-{found.id}.pdf", valid_s=PDF_LINK_VALID_S)
