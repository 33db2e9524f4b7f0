"""What the driver and a system's processes say to each other, for every Python system alike.

Standard library only: the peers' environments import this module, and they hold nothing of Millrace.

A worker prints `{"event": "ready"}` once it is fully started (connected, its start-up hooks run) and then
waits for a line on its standard input before it takes its first job: the driver starts the clock for all
workers at once, with no process start-up or import time inside it. While it runs, a worker prints its
running count of finished no-op jobs and the time the last one finished, at most every `REPORT_INTERVAL_S`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

#: how often a worker reports its count; the finish time it reports is the job's own, not the report's
REPORT_INTERVAL_S = 0.02

#: handed to the arq command (`--custom-log-dict`): warnings only, as for every system here; the figures
#: compare the machinery, not the rendering of one log line per job
WARNINGS_ONLY: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def wait_for_go() -> None:
    """Say `ready`, then wait for the driver's line on standard input (read without blocking the loop)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    emit("ready", pid=os.getpid())
    await reader.readline()


class Tally:
    """What the no-op and stamp jobs of one worker process did; one per process."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self._reporter: asyncio.Task[None] | None = None

    def done(self) -> None:
        self.count += 1
        self.last = time.time()

    def stamp(self, sent_at: float) -> None:
        """A stamp job started: how long after its producer called enqueue (both clocks are this machine's)."""
        emit("stamp", delay_ms=(time.time() - sent_at) * 1000)

    def start(self) -> None:
        self._reporter = asyncio.create_task(self._report())

    async def _report(self) -> None:
        reported = 0
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            if self.count != reported:
                reported = self.count
                emit("progress", count=self.count, last=self.last)


async def produce(enqueue: Callable[[], Awaitable[object]], jobs: int, concurrency: int) -> None:
    """Enqueue `jobs` no-op jobs from `concurrency` tasks of one process, and report how long it took."""
    remaining = jobs

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await enqueue()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    emit("enqueued", jobs=jobs, seconds=time.perf_counter() - started)


async def send_stamps(enqueue: Callable[[float], Awaitable[object]], samples: int, gap_s: float) -> None:
    """One stamp job at a time into an idle worker, spaced irregularly so as not to fall in step with a poll."""
    rng = random.Random(10)  # the same spacing for every system
    for _ in range(samples):
        await enqueue(time.time())
        await asyncio.sleep(gap_s * rng.uniform(0.5, 1.5))
    emit("stamps_sent", samples=samples)


class Commands:
    """The producer's command line, the same for every Python system: `produce`, `stamps` (and others)."""

    def __init__(self) -> None:
        self.parser = argparse.ArgumentParser()
        self.parser.add_argument("command")
        self.parser.add_argument("--jobs", type=int, default=1000)
        self.parser.add_argument("--concurrency", type=int, default=50)
        self.parser.add_argument("--samples", type=int, default=200)
        self.parser.add_argument("--gap-ms", type=float, default=30.0)

    def run(self, commands: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]]) -> None:
        options = self.parser.parse_args()
        asyncio.run(commands[options.command](options))


def redis_url() -> str:
    """The driver's private Redis: no default, so that a side process never lands on a shared server."""
    return os.environ["BENCH_REDIS_URL"]
