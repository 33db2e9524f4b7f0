"""Reading hostile uploads: every file gets records or one clear reason, never a crash."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db.imports import ContactRow, Rejection
from jobs.csv_cells import csv_lines, neutralize
from jobs.import_files import MAX_FIELD_CHARS, MAX_LINE_CHARS, Record, UnreadableFile, open_records
from jobs.import_rows import header_problems, to_contact

HEADER = "email,name,company\r\n"


def write(tmp_path: Path, data: bytes, name: str = "upload") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path, kind: str = "csv") -> tuple[list[str], str, list[str], list[Record]]:
    header, records = open_records(path, "xlsx" if kind == "xlsx" else "csv")
    return header.columns, header.encoding, header.notes, list(records)


def test_utf8_with_a_byte_order_mark_and_quoted_newlines(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + (HEADER + 'a@x.io,"Ada\nLovelace",ACME\r\n\r\nb@x.io,Bob,\r\n').encode()
    columns, encoding, notes, records = read_all(write(tmp_path, data))
    assert (columns, encoding, notes) == (["email", "name", "company"], "utf-8", [])
    assert [(r.line, r.cells) for r in records] == [
        (2, ["a@x.io", "Ada\nLovelace", "ACME"]),
        (5, ["b@x.io", "Bob", ""]),
    ]


def test_windows_1252_is_read_as_such_and_said(tmp_path: Path) -> None:
    data = (HEADER + "z@x.io,Zoë Ørsted,Café\r\n").encode("cp1252")
    _, encoding, notes, records = read_all(write(tmp_path, data))
    assert encoding == "windows-1252"
    assert notes == ["the file is not UTF-8: it was read as Windows-1252"]
    assert records[0].cells == ["z@x.io", "Zoë Ørsted", "Café"]


def test_utf16_with_its_mark(tmp_path: Path) -> None:
    data = (HEADER + "u@x.io,Ünal,\r\n").encode("utf-16")
    _, encoding, _, records = read_all(write(tmp_path, data))
    assert encoding == "utf-16"
    assert records[0].cells == ["u@x.io", "Ünal", ""]


def test_semicolons_are_read_as_the_delimiter_they_are(tmp_path: Path) -> None:
    columns, _, _, records = read_all(write(tmp_path, b"email;name\na@x.io;Ada, Countess\n"))
    assert columns == ["email", "name"]
    assert records[0].cells == ["a@x.io", "Ada, Countess"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"\r\n\r\n", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (HEADER.encode() + b"a@x.io,\x81\x8d\x8f,\r\n", "neither UTF-8 nor Windows-1252"),
        (HEADER.encode() + b'a@x.io,"' + b"x" * (MAX_FIELD_CHARS + 1) + b'",\r\n', "field larger than field limit"),
    ],
)
def test_an_unreadable_csv_gives_one_clear_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile, match=reason):
        read_all(write(tmp_path, data))


def test_a_row_with_missing_or_extra_fields_is_rejected_with_its_line() -> None:
    columns = ["email", "name", "company"]
    assert to_contact(Record(line=7, cells=["a@x.io", "Ada"]), columns) == Rejection(
        line=7, reason="expected 3 fields, found 2", raw="a@x.io,Ada"
    )
    assert isinstance(to_contact(Record(line=8, cells=["a@x.io", "Ada", "", "x"]), columns), Rejection)


def test_a_valid_row_becomes_a_contact_and_a_bad_email_a_reason() -> None:
    columns = ["name", "email", "phone"]
    assert to_contact(Record(line=2, cells=[" Ada ", "ada@x.io", "+44 20 7946 0000"]), columns) == ContactRow(
        line=2, email="ada@x.io", name="Ada", company=None, phone="+44 20 7946 0000"
    )
    rejected = to_contact(Record(line=3, cells=["Bob", "not-an-email", ""]), columns)
    assert isinstance(rejected, Rejection)
    assert rejected.reason.startswith("email:")


def test_the_header_needs_its_columns_once() -> None:
    assert header_problems(["email", "name", "notes"]) == ([], ["ignored columns: notes"])
    problems, _ = header_problems(["e-mail", "name", "name"])
    assert problems == [
        "missing columns: email (the first row must name the columns)",
        "columns named twice: name",
    ]


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def test_xlsx_rows_are_read_and_formulas_flagged(tmp_path: Path) -> None:
    data = xlsx_bytes([["Email", "Name", "Phone"], ["a@x.io", "Ada", 4420794], [], ["b@x.io", "=1+1", None]])
    columns, encoding, _, records = read_all(write(tmp_path, data, "u.xlsx"), "xlsx")
    assert (columns, encoding) == (["email", "name", "phone"], "xlsx")
    assert [(r.line, r.cells, r.problem) for r in records] == [
        (2, ["a@x.io", "Ada", "4420794"], None),
        (4, ["b@x.io", "=1+1", ""], "a formula, not a value, in column 2"),
    ]


@pytest.mark.parametrize("data", [b"PK\x03\x04 not really a zip", b"email,name\n", xlsx_bytes([])])
def test_a_file_that_is_no_workbook_is_refused_as_one(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UnreadableFile):
        read_all(write(tmp_path, data, "u.xlsx"), "xlsx")


def test_a_zip_bomb_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"\x00" * (600 * 1024 * 1024))
    with pytest.raises(UnreadableFile, match="unpacks to more than"):
        read_all(path, "xlsx")


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_any_bytes_give_records_or_a_reason(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data)
    try:
        columns, _, _, records = read_all(path)
    except UnreadableFile as error:
        reason = error.reason
        assert reason, "an unreadable file must say why"
        return
    for record in records:
        assert isinstance(to_contact(record, columns), ContactRow | Rejection)


@given(st.text())
def test_no_neutralized_cell_starts_a_formula(value: str) -> None:
    assert not neutralize(value).startswith(("=", "+", "-", "@", "\t", "\r"))
    (line,) = csv_lines([[value]])
    assert line.endswith(b"\r\n")


def test_a_header_of_too_many_columns_is_refused_quickly(tmp_path: Path) -> None:
    header = ",".join(f"c{n}" for n in range(200_000)).encode()
    with pytest.raises(UnreadableFile, match="columns"):
        read_all(write(tmp_path, header + b"\r\n"))


def test_a_line_of_endless_commas_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="longer than"):
        read_all(write(tmp_path, b"email,name\r\n" + b"," * (MAX_LINE_CHARS + 10) + b"\r\n"))


def test_a_broken_utf16_character_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    data = codecs.BOM_UTF16_LE + "email,name\r\na@x.io,A\r\n".encode("utf-16-le") + b"\x00\xd8"
    with pytest.raises(UnreadableFile, match="cannot be decoded"):
        read_all(write(tmp_path, data))


def test_a_nul_in_a_rejected_utf16_row_is_kept_escaped() -> None:
    rejected = to_contact(Record(line=2, cells=["a\x00@x.io", "n"]), ["email", "name"])
    assert isinstance(rejected, Rejection)
    assert "\x00" not in rejected.raw


def test_a_sheet_with_a_far_row_number_stops_at_the_sheet_limit(tmp_path: Path) -> None:
    path = tmp_path / "far.xlsx"
    path.write_bytes(xlsx_bytes([["email", "name"], ["a@x.io", "A"]]))
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info.filename) for info in archive.infolist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    far = '<row r="99999999999"><c r="A99999999999" t="inlineStr"><is><t>z@x.io</t></is></c></row>'
    sheet = sheet.replace("</sheetData>", far + "</sheetData>")
    sheet = sheet.replace('<dimension ref="A1:B2"/>', "")
    parts["xl/worksheets/sheet1.xml"] = sheet.encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)
    _, _, _, records = read_all(path, "xlsx")
    assert [r.cells for r in records] == [["a@x.io", "A"]]


def test_huge_shared_strings_are_refused_before_they_are_loaded(tmp_path: Path) -> None:
    path = tmp_path / "strings.xlsx"
    path.write_bytes(xlsx_bytes([["email", "name"]]))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/sharedStrings.xml", b"<sst>" + b"<si><t>x</t></si>" * 5_000_000 + b"</sst>")
    with pytest.raises(UnreadableFile):
        read_all(path, "xlsx")
