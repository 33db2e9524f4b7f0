"""Running a helper program (LibreOffice, pdftotext) from a job: in a session of its own, with a timeout,
and never leaving a process behind.

The program gets its own process group; on timeout, on the job's cancellation, or when it leaves
children running after it exits, the whole group is killed. Killing only the launcher would leave its
children running, re-parented to PID 1 (TOOLCHAIN_NOTES §3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass


class TimedOut(Exception):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"did not finish within {timeout_s:g} s")


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run(argv: Sequence[str], *, timeout_s: float, capture_stdout: bool = False) -> Finished:
    """Run `argv` to its end; raises TimedOut (after killing it whole) or FileNotFoundError."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if capture_stdout else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group, killed whole
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        raise TimedOut(timeout_s) from None
    finally:
        _kill_group(process.pid)
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
    assert process.returncode is not None
    return Finished(returncode=process.returncode, stdout=stdout or b"", stderr=stderr or b"")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
