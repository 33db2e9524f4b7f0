"""Make sure PostgreSQL and Redis answer at the given URLs; start private local ones when they do not.

Private servers live in `.local/` of the project, started from the installed `redis-server` and
PostgreSQL binaries. When those binaries are missing, this says exactly what to install.

    python scripts/services.py --database-url URL --redis-url URL [--create-database]
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

LOCAL = Path(__file__).resolve().parent.parent / ".local"
INSTALL_HINT = "apt-get install -y redis-server postgresql   (Debian/Ubuntu; or your platform's packages)"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_until_reachable(host: str, port: int, what: str) -> None:
    for _ in range(100):
        if reachable(host, port):
            return
        time.sleep(0.1)
    sys.exit(f"{what} did not start on {host}:{port}; see the logs in {LOCAL}")


def is_local(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def ensure_redis(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if reachable(host, port):
        return
    if not is_local(host):
        sys.exit(f"Redis at {host}:{port} does not answer, and it is not local for me to start")
    server = shutil.which("redis-server")
    if server is None:
        sys.exit(f"Redis does not answer at {host}:{port} and redis-server is not installed: {INSTALL_HINT}")
    folder = LOCAL / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
        ],
        check=True,
    )
    wait_until_reachable(host, port, "redis-server")
    print(f"started a private redis-server on {host}:{port} (pid file {folder / 'redis.pid'})")


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def as_postgres_user(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the `postgres` system user instead
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def ensure_postgres(url: str) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if reachable(host, port):
        return
    if not is_local(host):
        sys.exit(f"PostgreSQL at {host}:{port} does not answer, and it is not local for me to start")
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        sys.exit(f"PostgreSQL does not answer at {host}:{port} and its binaries are not installed: {INSTALL_HINT}")
    folder = LOCAL / "postgres"
    data = folder / "data"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        postgres_user = pwd.getpwnam("postgres")
        os.chown(folder, postgres_user.pw_uid, postgres_user.pw_gid)
    if not (data / "PG_VERSION").exists():
        user = parts.username or "postgres"
        subprocess.run(
            as_postgres_user([initdb, "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(
        as_postgres_user([pg_ctl, "-D", str(data), "-l", str(folder / "postgres.log"), "-o", options, "-w", "start"]),
        check=True,
    )
    wait_until_reachable(host, port, "PostgreSQL")
    print(f"started a private PostgreSQL on {host}:{port} (data in {data})")


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


def stop_private() -> None:
    """Stop the private servers this script started, by their pid files; the machine's own stay up."""
    redis_pid = LOCAL / "redis" / "redis.pid"
    if redis_pid.exists():
        try:
            os.kill(int(redis_pid.read_text().strip()), 15)
            print("stopped the private redis-server")
        except ProcessLookupError:
            pass
        redis_pid.unlink(missing_ok=True)
    data = LOCAL / "postgres" / "data"
    pg_ctl = postgres_bin("pg_ctl")
    if (data / "postmaster.pid").exists() and pg_ctl is not None:
        subprocess.run(as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "stop"]), check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--create-database", action="store_true")
    parser.add_argument("--stop", action="store_true", help="stop the private servers in .local/")
    args = parser.parse_args()
    if args.stop:
        stop_private()
        return
    if not (args.database_url and args.redis_url):
        parser.error("--database-url and --redis-url are required")
    ensure_redis(args.redis_url)
    ensure_postgres(args.database_url)
    if args.create_database:
        create_database(args.database_url)


if __name__ == "__main__":
    main()
