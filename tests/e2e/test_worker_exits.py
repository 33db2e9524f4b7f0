"""However a worker process ends, its last log line says why (millrace.exits)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.processes import Process, processes, wait_for
from tests.sample import app
from tests.servers import free_port

pytestmark = pytest.mark.e2e
WORKER = ("arq", "tests.sample.worker.NoCronWorker")


def last_line(process: Process) -> dict[str, Any]:
    lines = process.output().strip().splitlines()
    assert lines, "the worker wrote nothing"
    try:
        line: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise AssertionError(f"the last line is not the worker's own: {process.output()[-3000:]}") from None
    return line


async def test_sigterm_is_the_reason_of_a_clean_stop(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with processes(database_url, redis_url, tmp_path) as start:
        worker = start(*WORKER)
        await wait_for(lambda: "worker_started" in worker.output(), timeout_s=30, what="the worker to start")
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.popen.wait(timeout=30) == 0
    line = last_line(worker)
    assert (line["event"], line["reason"], line["exit_status"]) == ("worker_stopped", "SIGTERM", 0)


async def test_a_database_that_does_not_exist_is_the_reason_of_a_crash(redis_url: str, tmp_path: Path) -> None:
    """A configuration error at start-up, not an outage (PostgreSQL away is waited out: test_worker_start)."""
    nowhere = f"postgresql://postgres@127.0.0.1:5432/millrace_no_such_database_{free_port()}"
    async with processes(nowhere, redis_url, tmp_path) as start:
        worker = start(*WORKER)
        assert worker.popen.wait(timeout=60) == 1
    line = last_line(worker)
    assert (line["event"], line["exit_status"]) == ("worker_crashed", 1)
    assert "does not exist" in line["error"], line
    assert "Traceback" in line["exception"]


async def test_an_error_reply_in_arqs_main_loop_is_the_reason_of_a_crash(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A key of the wrong type where the queue belongs (another program's): no outage, a crash."""
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(app.TESTQ.redis_key, "not a queue")
    await client.aclose()
    async with processes(database_url, redis_url, tmp_path) as start:
        worker = start(*WORKER)
        assert worker.popen.wait(timeout=30) == 1
    line = last_line(worker)
    assert (line["event"], line["exit_status"]) == ("worker_crashed", 1)
    assert "WRONGTYPE" in line["error"], line
