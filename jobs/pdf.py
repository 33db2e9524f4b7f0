"""Invoice PDFs, drawn with fpdf2 (pure Python: no renderer process for a one-page document)."""

from __future__ import annotations

from fpdf import FPDF

from db.billing import Invoice
from db.users import User


def format_amount(amount_cents: int, currency: str) -> str:
    return f"{amount_cents / 100:,.2f} {currency.upper()}"


def invoice_pdf(invoice: Invoice, user: User) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title(f"Invoice {invoice.id}")
    pdf.add_page()
    pdf.set_font("helvetica", "B", 18)
    pdf.cell(0, 12, f"Invoice {invoice.id}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=11)
    rows = [
        ("Billed to", f"{user.name} <{user.email}>"),
        ("Issued", f"{invoice.created_at:%Y-%m-%d}"),
        ("Paid", "-" if invoice.paid_at is None else f"{invoice.paid_at:%Y-%m-%d}"),
        ("Amount", format_amount(invoice.amount_cents, invoice.currency)),
    ]
    for label, value in rows:
        pdf.cell(40, 8, label)
        # helvetica is latin-1 only: replace what it cannot draw rather than fail the whole receipt
        pdf.cell(0, 8, value.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
