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
import resource
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from jobs.programs import Program, ProgramMissing


class TimedOut(Exception):
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"did not finish within {timeout_s:g} s")


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    stderr: bytes


async def run(
    program: Program, argv: Sequence[str], *, timeout_s: float, max_file_bytes: int | None = None
) -> Finished:
    """Run `argv`, the command line of `program`, to its end; raises TimedOut (after killing it whole), or
    ProgramMissing when `argv[0]` cannot be run (a configuration error: the job ends at once).

    With `max_file_bytes`, no file it writes may grow past that size (RLIMIT_FSIZE): a hostile input
    that would expand to gigabytes of output stops the program instead of filling the disk.
    """
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group, killed whole
            preexec_fn=None if max_file_bytes is None else partial(_limit_file_size, max_file_bytes),
        )
    except (FileNotFoundError, PermissionError):  # not there, or not a program: the same on every attempt
        raise ProgramMissing(program, argv[0]) from None
    try:
        async with asyncio.timeout(timeout_s):
            _, stderr = await process.communicate()
    except TimeoutError:
        raise TimedOut(timeout_s) from None
    finally:
        _kill_group(process.pid)
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
    assert process.returncode is not None
    return Finished(returncode=process.returncode, stderr=stderr or b"")


def _limit_file_size(max_bytes: int) -> None:
    # in the child, before exec: past the limit a write fails and SIGXFSZ ends the program
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
