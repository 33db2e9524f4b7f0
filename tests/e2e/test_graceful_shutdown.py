"""A deploy's SIGTERM: the worker takes no new job and lets the running one finish first."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from millrace import JobClient, Pool, store
from tests.conftest import effects
from tests.processes import processes, wait_for
from tests.sample import app

pytestmark = pytest.mark.e2e


async def test_sigterm_lets_the_running_job_finish_and_starts_no_other(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with processes(database_url, redis_url, tmp_path) as start:
        worker = start("arq", "tests.sample.worker.NoCronWorker")
        running = await client.enqueue(app.SLEEPY, app.SleepArgs(seconds=1.5))
        await wait_for(lambda: effects(pool, "start"), timeout_s=20, what="the job to start")
        os.kill(worker.pid, signal.SIGTERM)
        waiting = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
        worker.popen.wait(timeout=20)
        assert worker.popen.returncode == 0, worker.output()
    finished = await store.jobs.get_job(pool, running.id)
    assert (finished.status, finished.attempts) == ("succeeded", 1)
    assert [a.outcome for a in await store.jobs.list_attempts(pool, running.id)] == ["succeeded"]
    assert (await store.jobs.get_job(pool, waiting.id)).status == "queued"  # left for the next worker
