"""The driver's side of the protocol: a system's process, its JSON lines, its CPU time; the private Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.peers.envs import ROOT

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), from /proc; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


class SideProcess:
    """One process of a system (a worker or a producer), its standard output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.ready = asyncio.Event()
        self.count = 0
        #: when this worker's latest no-op job finished (time.time() in the worker)
        self.last = 0.0
        self.stamps_ms: list[float] = []
        self.results: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str], log_path: Path) -> SideProcess:
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        return cls(process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").strip()
            try:
                message = json.loads(line) if line.startswith("{") else None
            except ValueError:
                message = None
            if not isinstance(message, dict) or "event" not in message:
                continue  # a library's own output on stdout
            event = message["event"]
            if event == "ready":
                self.ready.set()
            elif event == "progress":
                self.count, self.last = message["count"], message["last"]
            elif event == "stamp":
                self.stamps_ms.append(message["delay_ms"])
            else:
                self.results.append(message)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def finished(self, timeout_s: float) -> list[dict[str, Any]]:
        """Wait for a producer to exit; what it reported."""
        code = await asyncio.wait_for(self.process.wait(), timeout_s)
        await self._reader
        if code != 0:
            raise RuntimeError(f"{self.log_path.name} exited with {code}:\n{self.tail()}")
        return self.results

    async def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, as a supervisor stops a worker; SIGKILL if it is still there after `timeout_s`."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the bench's own on a free port, nothing saved to disk, stopped by its pid."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--dir", str(folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the private redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
