"""Redis's append-only file on a full disk: the worker waits, logs, and goes on when space returns."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
from redis.exceptions import ResponseError

from millrace import JobClient, Pool, store
from tests.conftest import effects
from tests.processes import Supervisor, processes, wait_for
from tests.sample import app
from tests.servers import PrivateRedis

pytestmark = pytest.mark.e2e
JOBS_BEFORE = 20
JOBS_DURING = 40
JOBS_DUE = 10
FULL_S = 4.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of the test's own, unmounted afterwards."""
    folder = tmp_path / "redis-data"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a file until the disk is full."""
    filler = folder / "filler"
    with filler.open("wb") as file:
        written = 1
        while written:
            try:
                written = file.write(b"\0" * 65536)
                file.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                written = 0
    return filler


async def refuse_writes(redis_url: str) -> None:
    """Write until Redis answers MISCONF: the first write it cannot append is still accepted."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        for n in range(100):
            try:
                await client.set(f"test:filler:{n}", b"x" * 8192)
            except ResponseError as error:
                if "MISCONF" not in str(error):
                    raise
                return
            await asyncio.sleep(0.05)
        raise AssertionError("Redis kept accepting writes on a full disk")
    finally:
        await client.aclose()


async def test_a_worker_waits_while_redis_cannot_write_its_append_only_file(
    pool: Pool, database_url: str, small_disk: Path, tmp_path: Path
) -> None:
    redis_server = PrivateRedis(small_disk, append_only=True)
    redis_server.start()
    try:
        async with (
            JobClient.open(redis_url=redis_server.url, pool=pool) as client,
            processes(database_url, redis_server.url, tmp_path) as start,
            # restarts the worker if it dies, as systemd would, and counts the deaths
            Supervisor(start, "arq", "tests.sample.worker.NoCronWorker") as supervisor,
        ):
            worker = supervisor.processes[0]

            async def succeeded(count: int) -> bool:
                statuses = await store.jobs.queue_statuses(pool)
                return sum(s.counts.get("succeeded", 0) for s in statuses) == count

            before = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in range(JOBS_BEFORE)]
            await wait_for(lambda: succeeded(JOBS_BEFORE), timeout_s=30, what=f"the first jobs: {worker.log_path}")

            # due while the disk is full: arq finds them, and may not mark them started
            due = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0), delay_s=1.0) for _ in range(JOBS_DUE)]
            filler = fill(small_disk)
            await refuse_writes(redis_server.url)
            during = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in range(JOBS_DURING)]
            assert {e.via for e in during} == {"outbox"}  # Redis refused them: on record, delivered later
            await asyncio.sleep(FULL_S)
            assert supervisor.deaths == [], f"exit statuses {supervisor.deaths}: {worker.output()[-4000:]}"

            filler.unlink()
            total = JOBS_BEFORE + JOBS_DUE + JOBS_DURING
            await wait_for(lambda: succeeded(total), timeout_s=30, what=f"every job: {worker.log_path}")
            assert supervisor.deaths == [], worker.output()[-4000:]
            assert supervisor.processes == [worker]  # the same process throughout
            lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    finally:
        redis_server.stop()
    runs = Counter(r["job_id"] for r in await effects(pool, "ran"))
    assert runs == Counter({e.id: 1 for e in before + due + during})
    waited = [line for line in lines if line["event"] == "redis_command_failed"]
    assert "MISCONF" in waited[0]["error"]
    assert len(waited) <= 2  # rate-limited (OUTAGE_LOG_EVERY_S): not a line per try
    relay_failures = [line for line in lines if line["event"] == "outbox_delivery_failed"]
    assert len(relay_failures) <= FULL_S * 2  # its backoff, not a line per producer's notice
