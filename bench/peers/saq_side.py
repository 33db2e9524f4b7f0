"""SAQ with its Redis queue: the worker and the producer, run from SAQ's own environment.

python -m bench.peers.saq_side worker|produce|stamps --concurrency N
"""

from __future__ import annotations

import argparse
from typing import Any

from saq import Queue, Worker  # type: ignore[import-not-found,unused-ignore]

from bench.peers.protocol import Commands, Tally, produce, redis_url, send_stamps, wait_for_go

QUEUE_NAME = "bench"
TALLY = Tally()


async def noop(ctx: dict[str, Any]) -> None:
    TALLY.done()


async def stamp(ctx: dict[str, Any], *, sent_at: float) -> None:
    TALLY.stamp(sent_at)


async def startup(ctx: dict[str, Any]) -> None:
    # SAQ runs its start-up hooks before it starts its upkeep and its `concurrency` dequeue tasks
    await wait_for_go()
    TALLY.start()


async def open_queue() -> Any:
    queue = Queue.from_url(redis_url(), name=QUEUE_NAME)
    await queue.connect()
    return queue


async def worker_command(options: argparse.Namespace) -> None:
    queue = await open_queue()
    # SAQ's own signal handlers end start() on SIGTERM, after the running jobs
    await Worker(queue, functions=[noop, stamp], concurrency=options.concurrency, startup=startup).start()


async def produce_command(options: argparse.Namespace) -> None:
    queue = await open_queue()
    try:
        await produce(lambda: queue.enqueue("noop"), options.jobs, options.concurrency)
    finally:
        await queue.disconnect()


async def stamps_command(options: argparse.Namespace) -> None:
    queue = await open_queue()
    try:
        await send_stamps(
            lambda sent_at: queue.enqueue("stamp", sent_at=sent_at), options.samples, options.gap_ms / 1000
        )
    finally:
        await queue.disconnect()


if __name__ == "__main__":
    Commands().run({"worker": worker_command, "produce": produce_command, "stamps": stamps_command})
