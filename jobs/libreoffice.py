"""DOCX to PDF with LibreOffice headless, one subprocess per document, never a process left behind.

Each run gets a profile folder of its own (two runs on one profile are serialized or fail), and runs
through jobs.subprocesses: a session of its own, a timeout, the whole process group killed after it
(`soffice` execs `oosplash`, which forks `soffice.bin`). LibreOffice exits 0 even when it could not
load the input, so success is a PDF file that starts like one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from jobs import subprocesses
from jobs.programs import Program

#: the command that starts LibreOffice; a setting, so that tests can put a misbehaving stand-in there
DEFAULT_COMMAND = ("soffice",)
LIBREOFFICE = Program(name="LibreOffice (soffice)", setting="soffice_command")


class ConversionFailed(Exception):
    """LibreOffice did not make a PDF; `reason` says how, for the person who sees the quotation failed."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def docx_to_pdf(docx: Path, *, timeout_s: float, command: Sequence[str] = DEFAULT_COMMAND) -> bytes:
    with tempfile.TemporaryDirectory(prefix="millrace-lo-") as folder:
        profile, out = Path(folder) / "profile", Path(folder) / "out"
        out.mkdir()
        argv = [
            *command,
            "--headless",
            "--norestore",
            "--nolockcheck",
            f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to",
            "pdf",
            "--outdir",
            str(out),
            str(docx),
        ]
        try:
            finished = await subprocesses.run(LIBREOFFICE, argv, timeout_s=timeout_s)
        except subprocesses.TimedOut:
            raise ConversionFailed(f"LibreOffice did not finish within {timeout_s:g} s and was stopped") from None
        pdf = out / (docx.stem + ".pdf")
        reason = _last_line(finished.stderr)
        if finished.returncode != 0:
            raise ConversionFailed(f"LibreOffice exited with {finished.returncode}: {reason}")
        if not pdf.exists() or pdf.read_bytes()[:5] != b"%PDF-":
            raise ConversionFailed(f"LibreOffice made no PDF: {reason or 'the document did not load'}")
        return pdf.read_bytes()


def _last_line(stderr: bytes) -> str:
    lines = [
        line
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and "javaldx" not in line  # a warning on every run, never the reason
    ]
    return lines[-1][:300] if lines else ""
