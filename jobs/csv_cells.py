"""Cells for spreadsheets to open safely: CSV injection neutralized, one cell at a time.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel,
LibreOffice and Google Sheets (`=HYPERLINK(...)`, `=cmd|...`). Such a cell gets a leading apostrophe,
which spreadsheets show as text and hide, as OWASP recommends for CSV files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: object) -> str:
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def csv_lines(rows: Iterable[Sequence[object]]) -> Iterable[bytes]:
    """Each row as one CSV record in UTF-8, every cell neutralized."""
    buffer = io.StringIO()
    # every field quoted: a `;` inside one stays inside it where `;` separates fields (Excel in many locales)
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        writer.writerow([neutralize(v) for v in row])
        yield buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
