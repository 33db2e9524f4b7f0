"""DOCX to PDF with LibreOffice headless, one subprocess per document, never a process left behind.

Each run gets a profile folder of its own (two runs on one profile are serialized or fail), its own
process session, and a timeout: on timeout, or when the job is cancelled, the whole process group is
killed. Killing only the launcher would leave `soffice.bin` running, re-parented to PID 1
(TOOLCHAIN_NOTES §3). LibreOffice exits 0 even when it could not load the input, so success is a PDF
file that starts like one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: the command that starts LibreOffice; a setting, so that tests can put a misbehaving stand-in there
DEFAULT_COMMAND = ("soffice",)


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
        code, stderr = await _run(argv, timeout_s)
        pdf = out / (docx.stem + ".pdf")
        if code != 0:
            raise ConversionFailed(f"LibreOffice exited with {code}: {_last_line(stderr)}")
        if not pdf.exists() or pdf.read_bytes()[:5] != b"%PDF-":
            raise ConversionFailed(f"LibreOffice made no PDF: {_last_line(stderr) or 'the document did not load'}")
        return pdf.read_bytes()


async def _run(argv: list[str], timeout_s: float) -> tuple[int, bytes]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: killed whole, LibreOffice's children included
        )
    except FileNotFoundError:
        raise ConversionFailed(f"LibreOffice is not installed ({argv[0]!r} not found)") from None
    try:
        async with asyncio.timeout(timeout_s):
            _, stderr = await process.communicate()
    except TimeoutError:
        raise ConversionFailed(f"LibreOffice did not finish within {timeout_s:g} s and was stopped") from None
    finally:
        _kill_group(process.pid)  # on a timeout, a cancel, or a launcher that left children: none stays
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_line(stderr: bytes) -> str:
    lines = [
        line
        for line in stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and "javaldx" not in line  # a warning on every run, never the reason
    ]
    return lines[-1][:300] if lines else ""
