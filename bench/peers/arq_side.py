"""Bare arq: the worker settings the `arq` command runs, and the producer.

    arq bench.peers.arq_side.WorkerSettings --custom-log-dict bench.peers.protocol.WARNINGS_ONLY
    python -m bench.peers.arq_side produce|stamps

Runs from its own environment (arq at the project's pin); the driver passes BENCH_REDIS_URL,
BENCH_CONCURRENCY and BENCH_POLL_DELAY_S.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import arq
from arq.connections import RedisSettings, create_pool

from bench.peers.protocol import Commands, Tally, produce, redis_url, send_stamps, wait_for_go

TALLY = Tally()


async def noop(ctx: dict[str, Any]) -> None:
    TALLY.done()


async def stamp(ctx: dict[str, Any], sent_at: float) -> None:
    TALLY.stamp(sent_at)


async def startup(ctx: dict[str, Any]) -> None:
    # arq runs on_startup after it has connected and before its first poll: the gate sits there
    await wait_for_go()
    TALLY.start()


class WorkerSettings:
    functions = [arq.func(noop, name="noop"), arq.func(stamp, name="stamp")]
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1"))
    max_jobs = int(os.environ.get("BENCH_CONCURRENCY", "100"))
    poll_delay = float(os.environ.get("BENCH_POLL_DELAY_S", "0.5"))
    on_startup = startup


async def produce_command(options: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url()))
    try:
        await produce(lambda: pool.enqueue_job("noop"), options.jobs, options.concurrency)
    finally:
        await pool.aclose()


async def stamps_command(options: argparse.Namespace) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url()))
    try:
        await send_stamps(lambda sent_at: pool.enqueue_job("stamp", sent_at), options.samples, options.gap_ms / 1000)
    finally:
        await pool.aclose()


if __name__ == "__main__":
    Commands().run({"produce": produce_command, "stamps": stamps_command})
