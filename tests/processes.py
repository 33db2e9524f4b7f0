"""Real processes for end-to-end tests: `arq` workers and the web app, each ended by its pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from tests.cli_run import ROOT, service_env


class Process:
    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as when a machine dies."""
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout_s: float = 10) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


ProcessFactory = Callable[..., Process]


@asynccontextmanager
async def processes(database_url: str, redis_url: str, folder: Path) -> AsyncIterator[ProcessFactory]:
    """Start processes with the test's own DATABASE_URL and REDIS_URL; all are stopped on the way out."""
    started: list[Process] = []

    def start(*command: str, wrap: Sequence[str] = (), **extra_env: str) -> Process:
        """`python -m command`, run through `wrap` if given (`ip netns exec NAME`, say)."""
        env = {**service_env(database_url, redis_url), **files_env(folder), **extra_env}
        process = Process([*wrap, sys.executable, "-m", *command], env, folder / f"process-{len(started)}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


#: the secret the test processes sign download links with
DOWNLOAD_LINK_SECRET = "test-download-link-secret"


def files_env(folder: Path) -> dict[str, str]:
    """Storage in the test's own folder (never the project's var/), and a link secret."""
    return {"STORAGE_FOLDER": str(folder / "storage"), "DOWNLOAD_LINK_SECRET": DOWNLOAD_LINK_SECRET}


async def wait_for(condition: Callable[[], object], *, timeout_s: float, what: str) -> None:
    """Poll an async or sync condition until it is truthy."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.1)


class Supervisor:
    """A supervisor's restart policy (systemd's Restart=always): `copies` processes of one command, each
    started again when it dies, with the exit statuses of the deaths kept."""

    def __init__(self, start: ProcessFactory, *command: str, copies: int = 1, **env: str) -> None:
        self._start = start
        self._command = command
        self._env = env
        self.processes = [start(*command, **env) for _ in range(copies)]
        self.deaths: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Supervisor:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            for index, process in enumerate(self.processes):
                if process.popen.poll() is not None:
                    self.deaths.append(process.popen.returncode)
                    self.processes[index] = self._start(*self._command, **self._env)
            await asyncio.sleep(0.1)
