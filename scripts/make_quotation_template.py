"""Write jobs/templates/documents/quotation.docx, the quotation template, with python-docx.

The template is kept in the repository; this script says how it was made, and makes it again after a
change: `python -m scripts.make_quotation_template`. Its `{{ }}` and `{%tr %}` tags are docxtpl's (Jinja
in a DOCX; each `{%tr %}` tag alone in its table row).
"""

from __future__ import annotations

from pathlib import Path

from docx import Document
from docx.shared import Inches, Pt

TEMPLATE = Path(__file__).resolve().parent.parent / "jobs" / "templates" / "documents" / "quotation.docx"


def main() -> None:
    document = Document()
    document.styles["Normal"].font.size = Pt(11)
    document.add_heading("Quotation {{ quotation.number }}", level=1)
    document.add_paragraph("For {{ quotation.customer_name }} <{{ quotation.customer_email }}>")
    document.add_paragraph("Issued {{ quotation.issued }}, valid for 30 days.")
    table = document.add_table(rows=4, cols=4)
    table.style = "Table Grid"
    for cell, title in zip(table.rows[0].cells, ("Description", "Quantity", "Unit price", "Amount"), strict=True):
        cell.text = title
    table.rows[1].cells[0].text = "{%tr for line in lines %}"
    values = ("{{ line.description }}", "{{ line.quantity }}", "{{ line.unit_price }}", "{{ line.amount }}")
    for cell, value in zip(table.rows[2].cells, values, strict=True):
        cell.text = value
    table.rows[3].cells[0].text = "{%tr endfor %}"
    table.autofit = False
    widths = (Inches(3.2), Inches(0.8), Inches(1.2), Inches(1.2))  # a wide description column: less wrapping
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width  # the table grid, which LibreOffice reads
        for cell in column.cells:
            cell.width = width  # each cell's own width, which Word reads
    document.add_paragraph("Subtotal: {{ quotation.subtotal }}")
    document.add_paragraph("Tax ({{ quotation.tax_rate }}): {{ quotation.tax }}")
    document.add_paragraph("Total: {{ quotation.total }}")
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(TEMPLATE))


if __name__ == "__main__":
    main()
