"""Quotations and the state of their PDF: pending, sent (PDF stored and e-mailed), or failed with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from millrace import Executor, NotFound

QuotationStatus = Literal["pending", "sent", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quotation:
    id: int
    user_id: int
    customer_name: str
    customer_email: str
    currency: str
    #: [{"description", "quantity", "unit_price_cents"}]
    lines: list[dict[str, Any]]
    subtotal_cents: int
    tax_rate: Decimal
    tax_cents: int
    total_cents: int
    status: QuotationStatus
    failure: str | None
    pdf_key: str | None
    job_id: str | None
    created_at: datetime
    sent_at: datetime | None


_COLUMNS = """id, user_id, customer_name, customer_email, currency, lines, subtotal_cents, tax_rate, tax_cents,
    total_cents, status, failure, pdf_key, job_id, created_at, sent_at"""


async def insert_quotation(
    conn: Executor,
    *,
    user_id: int,
    customer_name: str,
    customer_email: str,
    currency: str,
    lines: list[dict[str, Any]],
    subtotal_cents: int,
    tax_rate: Decimal,
    tax_cents: int,
    total_cents: int,
) -> int:
    quotation_id: int = await conn.fetchval(
        """INSERT INTO quotations (user_id, customer_name, customer_email, currency, lines, subtotal_cents, tax_rate,
                                   tax_cents, total_cents)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
        user_id,
        customer_name,
        customer_email,
        currency,
        lines,
        subtotal_cents,
        tax_rate,
        tax_cents,
        total_cents,
    )
    return quotation_id


async def find_quotation(conn: Executor, quotation_id: int) -> Quotation | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM quotations WHERE id = $1", quotation_id)
    return None if row is None else Quotation(**dict(row))


async def get_quotation(conn: Executor, quotation_id: int) -> Quotation:
    found = await find_quotation(conn, quotation_id)
    if found is None:
        raise NotFound("quotation", quotation_id)
    return found


async def set_quotation_job(conn: Executor, quotation_id: int, job_id: str) -> None:
    await conn.execute("UPDATE quotations SET job_id = $2 WHERE id = $1", quotation_id, job_id)


async def mark_quotation_sent(conn: Executor, quotation_id: int, pdf_key: str) -> None:
    await conn.execute(
        "UPDATE quotations SET status = 'sent', pdf_key = $2, failure = NULL, sent_at = now() WHERE id = $1",
        quotation_id,
        pdf_key,
    )


async def mark_quotation_failed(conn: Executor, quotation_id: int, failure: str) -> None:
    await conn.execute(
        "UPDATE quotations SET status = 'failed', failure = $2 WHERE id = $1 AND status = 'pending'",
        quotation_id,
        failure[:1000],
    )


async def mark_quotation_retried(conn: Executor, quotation_id: int) -> bool:
    """Back to pending, if it had failed; True if it had."""
    retried = await conn.fetchval(
        "UPDATE quotations SET status = 'pending', failure = NULL WHERE id = $1 AND status = 'failed' RETURNING true",
        quotation_id,
    )
    return bool(retried)
