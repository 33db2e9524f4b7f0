"""BullMQ's Python port: the worker and the producer, run from its own environment.

python -m bench.peers.bullmq_side worker|produce|stamps --concurrency N
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from bullmq import Queue, Worker  # type: ignore[import-not-found,unused-ignore]

from bench.peers.protocol import Commands, Tally, produce, redis_url, send_stamps, wait_for_go

QUEUE_NAME = "bench"
TALLY = Tally()


async def process(job: Any, token: str) -> None:
    if job.name == "stamp":
        TALLY.stamp(job.data["sent_at"])
    else:
        TALLY.done()


async def worker_command(options: argparse.Namespace) -> None:
    # autorun off: the worker connects first and takes no job until run()
    worker = Worker(
        QUEUE_NAME, process, {"connection": redis_url(), "concurrency": options.concurrency, "autorun": False}
    )
    await worker.backend.waitUntilReady()
    await wait_for_go()
    TALLY.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    running = asyncio.create_task(worker.run())
    await stop.wait()
    await worker.close()
    await running


async def open_queue() -> Any:
    return Queue(QUEUE_NAME, {"connection": redis_url()})


async def produce_command(options: argparse.Namespace) -> None:
    queue = await open_queue()
    try:
        await produce(lambda: queue.add("noop", {}), options.jobs, options.concurrency)
    finally:
        await queue.close()


async def stamps_command(options: argparse.Namespace) -> None:
    queue = await open_queue()
    try:
        await send_stamps(
            lambda sent_at: queue.add("stamp", {"sent_at": sent_at}), options.samples, options.gap_ms / 1000
        )
    finally:
        await queue.close()


if __name__ == "__main__":
    Commands().run({"worker": worker_command, "produce": produce_command, "stamps": stamps_command})
