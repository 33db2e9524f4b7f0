"""Real PostgreSQL and Redis for every test: a migrated template database cloned per test, and a Redis
database index of the session's own, flushed per test."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import arq.worker
import asyncpg
import pytest
import redis.asyncio

import db
from millrace import Pool, store
from millrace.client import JobClient
from millrace.declare import collect
from millrace.worker import WorkerConfig, worker_settings
from tests.sample import app
from tests.servers import PrivatePostgres, PrivateRedis

# Admin connection: tests create and drop their own databases through it.
ADMIN_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Tests run the web app as development does (a plain-HTTP dashboard cookie; no operator login needed to
# start); the processes they start inherit it. The production refusal has a test of its own.
os.environ.setdefault("ENVIRONMENT", "development")
_CLAIM_KEY = "millrace:test-claim"
#: who holds a claimed index: this machine and this process
_CLAIMER = f"{socket.gethostname()}:{os.getpid()}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def migrate(database_url: str) -> None:
    """The runtime's, the application's and the sample app's migrations, applied to `database_url`."""
    conn = await store.pool.connect(database_url)
    try:
        await store.migrate.apply_migrations(conn, [db.MIGRATIONS, app.MIGRATIONS])
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database() -> AsyncIterator[str]:
    name = f"millrace_tpl_{os.getpid()}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await migrate(with_database(ADMIN_DATABASE_URL, name))
    yield name
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@asynccontextmanager
async def scratch_database(template: str | None = None) -> AsyncIterator[str]:
    """A database of the test's own, empty or cloned from `template`, dropped afterwards."""
    name = f"millrace_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    clone = f' TEMPLATE "{template}"' if template else ""
    await admin.execute(f'CREATE DATABASE "{name}"{clone}')
    try:
        yield with_database(ADMIN_DATABASE_URL, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database_url(template_database: str) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template (about a tenth of a second)."""
    async with scratch_database(template_database) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await store.pool.create_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def redis_database() -> AsyncIterator[int]:
    """Claim an empty Redis database index for this session; the server may be shared."""
    for index in range(15, 0, -1):
        client = redis.asyncio.Redis.from_url(f"{REDIS_SERVER_URL}/{index}")
        await _free_if_abandoned(client)
        if await client.dbsize() == 0 and await client.set(_CLAIM_KEY, _CLAIMER, nx=True):
            yield index
            await client.flushdb()
            await client.aclose()
            return
        await client.aclose()
    raise RuntimeError(f"no empty Redis database index on {REDIS_SERVER_URL} to claim for tests")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def _free_if_abandoned(client: redis.asyncio.Redis) -> None:
    """An index claimed by a test session of this machine that was killed before it cleaned up (its pid is
    gone) is its leftovers: emptied, so that killed runs do not use up the indexes one by one."""
    claimer = await client.get(_CLAIM_KEY)
    host, _, pid = (claimer or b"").decode(errors="replace").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and _gone(int(pid)):
        await client.flushdb()


@pytest.fixture
async def redis_url(redis_database: int) -> AsyncIterator[str]:
    url = f"{REDIS_SERVER_URL}/{redis_database}"
    client = redis.asyncio.Redis.from_url(url)
    await client.flushdb()
    await client.set(_CLAIM_KEY, _CLAIMER)
    yield url
    await client.flushdb()
    await client.set(_CLAIM_KEY, _CLAIMER)
    await client.aclose()


@pytest.fixture
async def client(redis_url: str, pool: Pool) -> AsyncIterator[JobClient]:
    async with JobClient.open(redis_url=redis_url, pool=pool) as client:
        yield client


def sample_worker_settings(redis_url: str, database_url: str, *, with_crons: bool = False, **config: Any) -> type:
    jobs, crons = collect([app])
    settings = WorkerConfig(
        redis_url=redis_url,
        database_url=database_url,
        poll_delay_s=0.01,
        outbox_sweep_interval_s=0.2,
        configure_logging=False,
        event_loop_stall_s=None,  # in-process: the watchdog would end pytest itself
        # most of these workers run in burst mode, which ends when a read finds the queue empty: a read
        # that waits would only delay that (tests/test_wakeup.py runs the wait; real processes use it)
        **{"idle_wait_s": 0.0, **config},
    )
    return worker_settings(
        app.TESTQ, jobs=jobs, crons=crons if with_crons else [], config=settings, services=app.open_services
    )


RunWorker = Callable[..., Awaitable[arq.worker.Worker]]


@pytest.fixture
def run_worker(redis_url: str, database_url: str) -> RunWorker:
    """Run an in-process arq worker of the sample app in burst mode: it returns when the queue is empty."""

    async def run(*, redis_url: str = redis_url, **config: Any) -> arq.worker.Worker:
        settings = sample_worker_settings(redis_url, database_url, **config)
        worker = arq.worker.create_worker(settings, burst=True, handle_signals=False)
        try:
            await asyncio.wait_for(worker.main(), timeout=60)
        finally:
            await worker.close()
        return worker

    return run


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of the test's own, for tests that pause, stop or fill it."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own, for tests that stop it."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()


async def effects(pool: Pool, kind: str | None = None) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT job_id, attempt, kind, tick_at, worker, at FROM test_effects"
        " WHERE $1::text IS NULL OR kind = $1 ORDER BY id",
        kind,
    )
    return [dict(r) for r in rows]


def attempt_outcomes(attempts: Sequence[Any]) -> list[str | None]:
    return [a.outcome for a in attempts]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup` (make test), the tests that start real processes run one after
    another in one of the two processes, as they were written to: each starts workers, servers or a
    browser of its own and measures them, and two at once would share the machine's cores and
    PostgreSQL's connections. The other tests run beside them."""
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(pytest.mark.xdist_group("processes"))
