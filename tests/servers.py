"""Private servers a test may stop and start: never the machine's shared ones."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from scripts.services import as_postgres_user, postgres_bin


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of the test's own on a free port, stopped by its pid."""

    def __init__(
        self, folder: Path, *, append_only: bool = False, host: str = "127.0.0.1", wrap: Sequence[str] = ()
    ) -> None:
        self.folder = folder
        #: where its clients reach it; it listens on loopback too
        self.host = host
        #: prefix of its command: `ip netns exec NAME` runs it on a test host (tests/netns.py)
        self.wrap = tuple(wrap)
        self.port = free_port()
        #: keep an append-only file (fsync every second, Redis's default), so a restart keeps the queue
        self.append_only = append_only
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", *sorted({"127.0.0.1", self.host})]
        command += ["--save", "", "--appendonly", "yes" if self.append_only else "no", "--dir", str(self.folder)]
        if self.host != "127.0.0.1":  # a test host's clients come from its own address, which protected mode refuses
            command += ["--protected-mode", "no"]
        self.process = subprocess.Popen([*self.wrap, *command], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own, on a free port, stopped and started by its postmaster's pid."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        #: where its clients reach it; it listens on loopback too, and trusts every client (a test server)
        self.host = host
        # not under pytest's tmp_path: the `postgres` user must be able to reach the folder
        self.folder = Path(tempfile.mkdtemp(prefix="millrace-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            as_postgres_user([_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        if host != "127.0.0.1":
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {host}/24 trust\n")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def start(self) -> None:
        listen = ",".join(sorted({"127.0.0.1", self.host}))
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={listen}"
        log = str(self.folder / "postgres.log")
        subprocess.run(
            as_postgres_user([_bin("pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "start"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        """A fast shutdown of this cluster only: SIGINT to its postmaster, then wait for it to go."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _bin(name: str) -> str:
    found = postgres_bin(name)
    assert found is not None, f"{name} is not installed (apt-get install postgresql)"
    return found


@contextlib.contextmanager
def asgi_server(app: Any, port: int) -> Iterator[None]:
    """Serve an ASGI app (a stand-in provider) on 127.0.0.1:`port` from a thread, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
