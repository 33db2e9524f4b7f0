"""The text of an uploaded document: a PDF through poppler's pdftotext (a subprocess with a timeout, so a
hostile PDF costs seconds, never a worker), a text file decoded as UTF-8 or, failing that, Windows-1252."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path

from jobs import subprocesses
from jobs.programs import Program

#: the model reads this much of a document at most
MAX_CHARS = 20_000
EXTRACT_TIMEOUT_S = 30.0
#: pdftotext may write this much text at most
MAX_TEXT_BYTES = 32 * 1024 * 1024
PDFTOTEXT = Program(name="pdftotext (poppler-utils)", setting="pdftotext_command")


class Unextractable(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def extract_text(path: Path, kind: str, *, pdftotext_command: Sequence[str]) -> str:
    if kind == "pdf":
        text = await _pdf_text(path, pdftotext_command)
    else:
        raw = await asyncio.to_thread(path.read_bytes)
        if b"\x00" in raw[:8192]:
            raise Unextractable("this is not a text file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("cp1252", errors="replace")
    text = text.strip()
    if not text:
        raise Unextractable("the document holds no text (a scanned PDF needs OCR first)")
    return text[:MAX_CHARS]


async def _pdf_text(path: Path, command: Sequence[str]) -> str:
    out = path.with_suffix(".txt")
    try:
        finished = await subprocesses.run(
            PDFTOTEXT,
            [*command, "-enc", "UTF-8", "-l", "50", str(path), str(out)],
            timeout_s=EXTRACT_TIMEOUT_S,
            max_file_bytes=MAX_TEXT_BYTES,  # a PDF whose streams expand to gigabytes stops here
        )
    except subprocesses.TimedOut:
        raise Unextractable(f"reading the PDF took longer than {EXTRACT_TIMEOUT_S:g} s") from None
    if finished.returncode == -signal.SIGXFSZ:
        raise Unextractable(f"the PDF's text is larger than {MAX_TEXT_BYTES // 2**20} MiB")
    if finished.returncode != 0:
        message = finished.stderr.decode("utf-8", "replace").strip().splitlines()
        raise Unextractable(f"this is not a readable PDF ({message[-1][:200] if message else 'no detail'})")
    with out.open("rb") as text:
        return text.read(MAX_CHARS * 4).decode("utf-8", "replace")
