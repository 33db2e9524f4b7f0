"""Turning one record of an import into a contact, or into the reason it was turned away.

The file's header names its columns in any order; `email` and `name` must be there, `company` and
`phone` may be, anything else is ignored (and the summary says so).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError

from db.imports import ContactRow, Rejection
from jobs.import_files import Record
from millrace import unstorable_text

REQUIRED = ("email", "name")
OPTIONAL = ("company", "phone")
#: a rejected row is kept this long, enough to find it in the file
RAW_CHARS = 500


def _storable(text: str) -> str:
    problem = unstorable_text(text)
    if problem is not None:
        raise ValueError(problem)
    if any(ord(c) < 32 for c in text):
        raise ValueError("line breaks and control characters are not allowed here")
    return text


def _one_spaced(text: str) -> str:
    # a line break or a tab inside a name (a quoted newline in the CSV) reads as a space
    return " ".join(text.split())


Field200 = Annotated[str, BeforeValidator(_one_spaced), StringConstraints(max_length=200), AfterValidator(_storable)]


class ContactFields(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    email: Annotated[
        str,
        StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
        AfterValidator(_storable),
    ]
    name: Annotated[Field200, StringConstraints(min_length=1)]
    company: Field200 | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ().-]{3,30}$")] | None = None


def header_problems(columns: Sequence[str]) -> tuple[list[str], list[str]]:
    """(what makes the header unusable, notes for the summary)."""
    problems = []
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)} (the first row must name the columns)")
    repeated = sorted(c for c, n in Counter(columns).items() if c and n > 1)
    if repeated:
        problems.append(f"columns named twice: {', '.join(repeated[:10])}")
    ignored = [c for c in columns if c not in REQUIRED + OPTIONAL]
    notes = [f"ignored columns: {', '.join(c[:50] or '(unnamed)' for c in ignored[:20])}"] if ignored else []
    return problems, notes


def to_contact(record: Record, columns: Sequence[str]) -> ContactRow | Rejection:
    if record.problem is not None:
        return _rejected(record, record.problem)
    if len(record.cells) != len(columns):
        return _rejected(record, f"expected {len(columns)} fields, found {len(record.cells)}")
    values = {c: v for c, v in zip(columns, record.cells, strict=True) if c in REQUIRED + OPTIONAL}
    try:
        fields = ContactFields(**{k: (v if v.strip() or k in REQUIRED else None) for k, v in values.items()})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _rejected(record, f"{where}: {first['msg']}")
    return ContactRow(
        line=record.line, email=fields.email, name=fields.name, company=fields.company, phone=fields.phone
    )


def _rejected(record: Record, reason: str) -> Rejection:
    raw = ",".join(record.cells)[: RAW_CHARS * 2]
    if unstorable_text(raw) is not None:  # the raw text itself cannot be stored: keep a readable escape of it
        raw = raw.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return Rejection(line=record.line, reason=reason[:300], raw=raw[:RAW_CHARS])
