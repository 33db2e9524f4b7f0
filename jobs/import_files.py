"""Reading an uploaded CSV or Excel file as numbered records, whatever arrives.

Pure and synchronous (the import job runs it in a thread): a file is read as a stream, one record at a
time, so a million rows take the memory of one. What makes the whole file unreadable raises
UnreadableFile with a reason a person can act on; what is wrong with one row is left to the row's
validation. Encodings: UTF-8 (with or without a byte-order mark) and UTF-16 with its mark; a file that is
not valid UTF-8 is read as Windows-1252, as Excel on Windows writes it, and the summary says so.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openpyxl
import openpyxl.utils.exceptions

FileKind = Literal["csv", "xlsx"]

#: a single field longer than this stops a CSV import: nothing a contact has is that long
MAX_FIELD_CHARS = 100_000
#: an .xlsx whose parts would unpack to more than this is refused before it is opened (a zip bomb)
MAX_XLSX_UNPACKED_BYTES = 512 * 1024 * 1024
#: openpyxl loads the shared strings whole: a workbook whose strings unpack past this is refused
MAX_XLSX_SHARED_STRINGS_BYTES = 64 * 1024 * 1024
#: a part that unpacks to more than this many times its packed size is a bomb, not a spreadsheet
MAX_XLSX_RATIO = 200
#: a header with more columns than this is not a contact list (and would make every row that wide)
MAX_COLUMNS = 200
#: a sheet holds this many rows at most (Excel's limit); openpyxl makes empty rows up to any row number
MAX_SHEET_ROWS = 1_048_576
#: a physical CSV line longer than this stops the import: no record of MAX_COLUMNS fields needs more,
#: and a line of a hundred million commas would otherwise become a list of a hundred million fields
MAX_LINE_CHARS = 4 * 1024 * 1024
_SCAN_BYTES = 1024 * 1024
_DELIMITERS = (",", ";", "\t")
_NEITHER = "the file's text is neither UTF-8 nor Windows-1252: save it as CSV UTF-8"

csv.field_size_limit(MAX_FIELD_CHARS)


class UnreadableFile(Exception):
    """The file as a whole cannot be imported; `reason` says why, for the person who uploaded it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Record:
    #: where the record starts in the file: the line of a CSV, the row of a sheet (1 is the header)
    line: int
    cells: list[str]
    #: what makes the record unusable before validation (a formula cell), if anything
    problem: str | None = None


@dataclass(slots=True)
class Header:
    columns: list[str]
    #: how the text was read: "utf-8", "utf-16", "windows-1252", or "xlsx"
    encoding: str
    notes: list[str] = field(default_factory=list)


def open_records(path: Path, kind: FileKind) -> tuple[Header, Iterator[Record]]:
    """The file's header (column names, lower case) and an iterator over its records."""
    if kind == "xlsx":
        return _open_xlsx(path)
    return _open_csv(path)


def _open_csv(path: Path) -> tuple[Header, Iterator[Record]]:
    encoding = detect_encoding(path)
    text = path.open(encoding=encoding, newline="")
    try:
        first_line = text.readline(65536)
        text.seek(0)
        delimiter = max(_DELIMITERS, key=first_line.count)
        reader = csv.reader(_bounded_lines(text), delimiter=delimiter)
        columns = next(reader, None)
    except (csv.Error, UnicodeError) as error:
        text.close()
        raise UnreadableFile(f"line 1: {_reason(error)}") from None
    except UnreadableFile:
        text.close()
        raise
    if columns is None or not any(c.strip() for c in columns):
        text.close()
        raise UnreadableFile("the file is empty: it needs a header row naming its columns")
    if len(columns) > MAX_COLUMNS:
        text.close()
        raise UnreadableFile(f"the header names {len(columns)} columns; at most {MAX_COLUMNS} are read")
    name = {"utf-8-sig": "utf-8", "utf-16": "utf-16", "cp1252": "windows-1252"}[encoding]
    header = Header(columns=[c.strip().lstrip("\ufeff").lower() for c in columns], encoding=name)
    if name == "windows-1252":
        header.notes.append("the file is not UTF-8: it was read as Windows-1252")
    return header, _csv_records(reader, text)


def _csv_records(reader: Any, text: Any) -> Iterator[Record]:
    with text:
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeError) as error:
                raise UnreadableFile(f"line {start}: {_reason(error)}") from None
            if any(c.strip() for c in cells):  # blank lines are not rows
                yield Record(line=start, cells=cells)
            start = reader.line_num + 1


def _bounded_lines(text: Any) -> Iterator[str]:
    """The file's physical lines, none longer than MAX_LINE_CHARS (csv.reader's input)."""
    while line := text.readline(MAX_LINE_CHARS + 1):
        if len(line) > MAX_LINE_CHARS:
            raise UnreadableFile(f"a line is longer than {MAX_LINE_CHARS:,} characters")
        yield line


def _reason(error: Exception) -> str:
    if isinstance(error, UnicodeError):
        return "the text cannot be decoded (a broken character)"
    return str(error)


def detect_encoding(path: Path) -> str:
    """A Python codec for the file: by its byte-order mark, else UTF-8 if all of it decodes, else cp1252."""
    with path.open("rb") as raw:
        head = raw.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        raw.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        while chunk := raw.read(_SCAN_BYTES):
            _refuse_binary(chunk)
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                return _single_byte(path)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return _single_byte(path)
    return "utf-8-sig"


def _single_byte(path: Path) -> str:
    # cp1252 leaves five bytes undefined; a file with them is no Windows text either
    with path.open("rb") as raw:
        while chunk := raw.read(_SCAN_BYTES):
            _refuse_binary(chunk)
            try:
                chunk.decode("cp1252")
            except UnicodeDecodeError:
                raise UnreadableFile(_NEITHER) from None
    return "cp1252"


def _refuse_binary(chunk: bytes) -> None:
    if b"\x00" in chunk:
        raise UnreadableFile("this is not a text file (it holds NUL bytes): upload a CSV or an .xlsx")


def _open_xlsx(path: Path) -> tuple[Header, Iterator[Record]]:
    _check_zip(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=False)
    except (zipfile.BadZipFile, openpyxl.utils.exceptions.InvalidFileException, KeyError, ValueError, OSError):
        raise UnreadableFile("this is not a readable .xlsx workbook") from None
    if not workbook.worksheets:
        workbook.close()
        raise UnreadableFile("the workbook has no sheet")
    sheet = workbook.worksheets[0]
    try:
        first = next(sheet.iter_rows(min_row=1, max_row=1, max_col=MAX_COLUMNS + 1), None)
    except Exception as error:  # openpyxl raises a wide range of errors on malformed sheet XML
        workbook.close()
        raise UnreadableFile(f"the first sheet cannot be read: {type(error).__name__}") from None
    columns = [_cell_text(c.value) for c in first] if first is not None else []
    while columns and not columns[-1].strip():
        columns.pop()  # a sheet's rows run to its widest cell: trailing empty headers are not columns
    if not columns:
        workbook.close()
        raise UnreadableFile("the first sheet is empty: it needs a header row naming its columns")
    if len(columns) > MAX_COLUMNS:
        workbook.close()
        raise UnreadableFile(f"the header names more than {MAX_COLUMNS} columns")
    header = Header(columns=[c.strip().lower() for c in columns], encoding="xlsx")
    # bounded both ways: openpyxl makes empty rows up to any row number, and cells up to any column
    rows = sheet.iter_rows(min_row=2, max_row=MAX_SHEET_ROWS, max_col=len(columns) + 1)
    return header, _xlsx_records(workbook, rows, len(columns))


def _xlsx_records(workbook: Any, rows: Iterator[Any], width: int) -> Iterator[Record]:
    try:
        for line, row in enumerate(rows, start=2):
            cells = [_cell_text(c.value) for c in row]
            while len(cells) > width and not cells[-1].strip():
                cells.pop()  # an empty cell past the header's last column is no extra field
            if not any(c.strip() for c in cells):
                continue
            formulas = [i for i, c in enumerate(row) if getattr(c, "data_type", None) == "f"]
            problem = f"a formula, not a value, in column {formulas[0] + 1}" if formulas else None
            yield Record(line=line, cells=cells, problem=problem)
    except UnreadableFile:
        raise
    except Exception as error:  # malformed sheet XML part-way through
        raise UnreadableFile(f"the sheet cannot be read past this point: {type(error).__name__}") from None
    finally:
        workbook.close()


def _check_zip(path: Path) -> None:
    if not zipfile.is_zipfile(path):
        raise UnreadableFile("this is not an .xlsx workbook")
    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError):
        raise UnreadableFile("this is not a readable .xlsx workbook") from None
    if sum(part.file_size for part in parts) > MAX_XLSX_UNPACKED_BYTES:
        raise UnreadableFile(f"the workbook unpacks to more than {MAX_XLSX_UNPACKED_BYTES // 2**20} MiB")
    for part in parts:
        if part.filename.lower().endswith("sharedstrings.xml") and part.file_size > MAX_XLSX_SHARED_STRINGS_BYTES:
            raise UnreadableFile("the workbook's shared strings are too large to read")
        if part.file_size > 1024 * 1024 and part.file_size > MAX_XLSX_RATIO * max(part.compress_size, 1):
            raise UnreadableFile("the workbook unpacks to far more than its size: it is not read")


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
