"""Millrace as production runs it: the `arq` command on a settings class from `worker_settings`, durable
records in PostgreSQL; and the producer, through `JobClient.enqueue` (direct, or inside a transaction).

    arq bench.peers.millrace_side.BenchWorker --custom-log-dict bench.peers.protocol.WARNINGS_ONLY
    python -m bench.peers.millrace_side produce|outbox|stamps

The driver passes BENCH_REDIS_URL, BENCH_DATABASE_URL, BENCH_CONCURRENCY, BENCH_IDLE_WAIT_S and
BENCH_PG_POOL (the worker's and the producer's pool size), as an entry point reads its environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bench.peers.protocol import Commands, Tally, produce, redis_url, send_stamps, wait_for_go
from millrace import (
    JobArgs,
    JobClient,
    JobContext,
    JobRef,
    NoArgs,
    Pool,
    Queue,
    WorkerConfig,
    collect,
    create_pool,
    job,
    worker_settings,
)

BENCH = Queue(name="bench", concurrency=100, timeout_s=30)
TALLY = Tally()


class StampArgs(JobArgs):
    sent_at: float


NOOP = JobRef("bench_noop", BENCH, NoArgs)
STAMP = JobRef("bench_stamp", BENCH, StampArgs)


@job(NOOP)
async def bench_noop(ctx: JobContext[Tally], args: NoArgs) -> None:
    ctx.services.done()


@job(STAMP)
async def bench_stamp(ctx: JobContext[Tally], args: StampArgs) -> None:
    ctx.services.stamp(args.sent_at)


@asynccontextmanager
async def gated_services(_jobs: JobClient) -> AsyncIterator[Tally]:
    # the application's services are opened after the runtime's pools, heartbeat, record writer and relay
    # have started, and before arq's first poll: the gate sits there
    await wait_for_go()
    TALLY.start()
    yield TALLY


def database_url() -> str:
    return os.environ["BENCH_DATABASE_URL"]


def pool_size() -> int:
    return int(os.environ.get("BENCH_PG_POOL", "10"))


def _worker_class() -> type:
    config = WorkerConfig(
        redis_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1"),
        database_url=os.environ.get("BENCH_DATABASE_URL", "postgresql://127.0.0.1:1/none"),
        concurrency={BENCH.name: int(os.environ.get("BENCH_CONCURRENCY", "100"))},
        idle_wait_s=float(os.environ.get("BENCH_IDLE_WAIT_S", "0")),
        database_pool_max_size=pool_size(),
        log_format="json",
        log_level="WARNING",
    )
    jobs, _ = collect([sys.modules[__name__]])
    return worker_settings(BENCH, jobs=jobs, config=config, services=gated_services)


BenchWorker = _worker_class()


@asynccontextmanager
async def client() -> AsyncIterator[JobClient]:
    pool: Pool = await create_pool(database_url(), max_size=pool_size())
    try:
        async with JobClient.open(redis_url=redis_url(), pool=pool) as jobs:
            yield jobs
    finally:
        await pool.close()


async def produce_command(options: argparse.Namespace) -> None:
    async with client() as jobs:
        await produce(lambda: jobs.enqueue(NOOP, NoArgs()), options.jobs, options.concurrency)


async def outbox_command(options: argparse.Namespace) -> None:
    """Each job enqueued inside a transaction of its own: the outbox row, delivered once it commits."""
    async with client() as jobs:

        async def in_transaction() -> None:
            async with jobs.pool.acquire() as conn, conn.transaction():
                await jobs.enqueue(NOOP, NoArgs(), conn=conn)

        # no more tasks than connections: a transaction holds its connection until it commits
        await produce(in_transaction, options.jobs, min(options.concurrency, pool_size()))


async def stamps_command(options: argparse.Namespace) -> None:
    async with client() as jobs:
        await send_stamps(
            lambda sent_at: jobs.enqueue(STAMP, StampArgs(sent_at=sent_at)), options.samples, options.gap_ms / 1000
        )


if __name__ == "__main__":
    Commands().run({"produce": produce_command, "outbox": outbox_command, "stamps": stamps_command})
