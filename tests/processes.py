"""Real processes for end-to-end tests: `arq` workers and the web app, each ended by its pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
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

    def start(*command: str, **extra_env: str) -> Process:
        env = {**service_env(database_url, redis_url), **extra_env}
        process = Process([sys.executable, "-m", *command], env, folder / f"process-{len(started)}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


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
