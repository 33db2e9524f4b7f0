"""`make bench`: Millrace against bare arq, measured in one run on this machine. Figures, no assertions.

Throughput: N no-op jobs enqueued first, then one worker (concurrency 10) drains them in burst mode.
Latency: one job at a time into an idle worker; the job notes when it started. Bare arq polls every
`POLL_DELAY_S`, which bounds its latency from below; Millrace's idle worker waits for the token its
producer pushes (millrace.wakeup) and reads its queue at once, and is measured both ways.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any

import arq.worker
import asyncpg
import redis.asyncio
import structlog
from arq.connections import RedisSettings, create_pool
from arq.constants import job_key_prefix

from bench import apps
from bench.webhooks import REQUESTS as WEBHOOK_REQUESTS
from bench.webhooks import bench_webhook_endpoint
from millrace import NoArgs, relay, store, wakeup
from millrace.client import JobClient
from millrace.declare import collect
from millrace.logs import configure_logging
from millrace.runtime import RUNTIME_KEY, WorkerRuntime
from millrace.worker import WorkerConfig, worker_settings

ADMIN_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
JOBS = int(os.environ.get("BENCH_JOBS", "5000"))
LATENCY_SAMPLES = int(os.environ.get("BENCH_LATENCY_SAMPLES", "200"))
CONCURRENCY = 10
POLL_DELAY_S = 0.1
BARE_QUEUE = "bench:bare"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def gather_bounded(calls: list[Callable[[], Awaitable[Any]]], concurrency: int = 50) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


def bare_settings(redis_url: str, probe: apps.Probe) -> dict[str, Any]:
    async def startup(ctx: dict[str, Any]) -> None:
        ctx["probe"] = probe

    return {
        "functions": [arq.func(apps.bare_noop, name="bare_noop"), arq.func(apps.bare_stamp, name="bare_stamp")],
        "queue_name": BARE_QUEUE,
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "max_jobs": CONCURRENCY,
        "poll_delay": POLL_DELAY_S,
        "on_startup": startup,
    }


#: a burst worker ends on a read that finds nothing: a short wait there costs the drain almost nothing
DRAIN_IDLE_WAIT_S = 0.05


def millrace_settings(
    redis_url: str, database_url: str, probe: apps.Probe, idle_wait_s: float = DRAIN_IDLE_WAIT_S
) -> type:
    jobs, _ = collect([apps])
    config = WorkerConfig(
        redis_url=redis_url,
        database_url=database_url,
        poll_delay_s=POLL_DELAY_S,
        configure_logging=False,
        idle_wait_s=idle_wait_s,
    )

    def services(jobs: JobClient) -> AbstractAsyncContextManager[apps.Probe]:
        return apps.open_probe(jobs, probe)

    return worker_settings(apps.BENCH, jobs=jobs, config=config, services=services)


async def drain(settings: Any) -> tuple[float, arq.worker.Worker]:
    worker = arq.worker.create_worker(settings, burst=True, handle_signals=False)
    try:
        seconds = await timed(worker.main)
    finally:
        await worker.close()
    return seconds, worker


async def bench_bare(redis_url: str) -> dict[str, float]:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    enqueue_s = await timed(
        partial(gather_bounded, [partial(pool.enqueue_job, "bare_noop", _queue_name=BARE_QUEUE) for _ in range(JOBS)])
    )
    await pool.aclose()
    process_s, _ = await drain(bare_settings(redis_url, apps.Probe()))
    return {"enqueue_per_s": JOBS / enqueue_s, "process_per_s": JOBS / process_s}


async def bench_millrace(redis_url: str, database_url: str) -> dict[str, float]:
    async with JobClient.open(redis_url=redis_url, database_url=database_url) as client:
        enqueue_s = await timed(
            partial(gather_bounded, [partial(client.enqueue, apps.NOOP, NoArgs()) for _ in range(JOBS)])
        )
        outbox_jobs = JOBS // 5

        async def in_transaction() -> None:
            async with client.pool.acquire() as conn, conn.transaction():
                await client.enqueue(apps.NOOP, NoArgs(), conn=conn)

        outbox_s = await timed(partial(gather_bounded, [in_transaction for _ in range(outbox_jobs)], 10))
        relay_s = await timed(partial(relay.deliver_all, client.pool, client.redis, None))
    process_s, worker = await drain(millrace_settings(redis_url, database_url, apps.Probe()))
    runtime: WorkerRuntime[Any] = worker.ctx[RUNTIME_KEY]
    records = runtime.records
    return {
        "enqueue_per_s": JOBS / enqueue_s,
        "outbox_enqueue_per_s": outbox_jobs / outbox_s,
        "relay_per_s": outbox_jobs / relay_s,
        "process_per_s": (JOBS + outbox_jobs) / process_s,
        "record_events": records.events_written,
        "record_batches": records.batches_written,
    }


async def latency(worker_settings_: Any, enqueue: Callable[[float], Awaitable[Any]], probe: apps.Probe) -> list[float]:
    worker = arq.worker.create_worker(worker_settings_, handle_signals=False)
    task = asyncio.create_task(worker.main())
    await asyncio.sleep(0.5)
    for _ in range(LATENCY_SAMPLES):
        await enqueue(time.time())
        await asyncio.sleep(POLL_DELAY_S * 0.37)  # not in step with the poll
    await asyncio.sleep(POLL_DELAY_S * 3)
    task.cancel()
    await worker.close()
    return probe.delays_ms


async def bench_latency(redis_url: str, database_url: str) -> dict[str, list[float]]:
    bare_probe, direct_probe, outbox_probe = apps.Probe(), apps.Probe(), apps.Probe()
    pool = await create_pool(RedisSettings.from_dsn(redis_url))

    async def bare(sent_at: float) -> None:
        await pool.enqueue_job("bare_stamp", sent_at, _queue_name=BARE_QUEUE)

    result = {"bare arq": await latency(bare_settings(redis_url, bare_probe), bare, bare_probe)}
    await pool.aclose()
    async with JobClient.open(redis_url=redis_url, database_url=database_url) as client:

        async def direct(sent_at: float) -> None:
            await client.enqueue(apps.STAMP, apps.StampArgs(sent_at=sent_at))

        async def outbox(sent_at: float) -> None:
            async with client.pool.acquire() as conn, conn.transaction():
                await client.enqueue(apps.STAMP, apps.StampArgs(sent_at=sent_at), conn=conn)

        polling_probe = apps.Probe()
        settings = millrace_settings(redis_url, database_url, polling_probe, idle_wait_s=0)
        result[f"millrace direct, polling every {POLL_DELAY_S}s"] = await latency(settings, direct, polling_probe)
        settings = millrace_settings(redis_url, database_url, direct_probe, idle_wait_s=wakeup.IDLE_WAIT_S)
        result["millrace direct, woken by its token"] = await latency(settings, direct, direct_probe)
        settings = millrace_settings(redis_url, database_url, outbox_probe, idle_wait_s=wakeup.IDLE_WAIT_S)
        result["millrace outbox, woken by its token"] = await latency(settings, outbox, outbox_probe)
    return result


#: how long an idle worker is watched: several of its waits, and one of arq's 10-s health checks
IDLE_WATCH_S = 12.0


async def idle_commands_per_s(settings: Any, redis_url: str) -> float:
    """Redis commands a second from one idle worker (every client of it: arq's, the runtime's), counted by
    the server; nothing else uses the server meanwhile but the two INFO calls that count."""
    worker = arq.worker.create_worker(settings, handle_signals=False)
    task = asyncio.create_task(worker.main())
    await asyncio.sleep(2.0)  # started and settled
    async with redis.asyncio.Redis.from_url(redis_url) as counter:
        before = (await counter.info("stats"))["total_commands_processed"]
        await asyncio.sleep(IDLE_WATCH_S)
        after = (await counter.info("stats"))["total_commands_processed"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await worker.close()
    return float(after - before - 1) / IDLE_WATCH_S


async def bench_idle(redis_url: str, database_url: str) -> dict[str, float]:
    return {
        f"bare arq, polling every {POLL_DELAY_S}s": await idle_commands_per_s(
            bare_settings(redis_url, apps.Probe()), redis_url
        ),
        f"millrace, polling every {POLL_DELAY_S}s": await idle_commands_per_s(
            millrace_settings(redis_url, database_url, apps.Probe(), idle_wait_s=0), redis_url
        ),
        "millrace, waiting for a token": await idle_commands_per_s(
            millrace_settings(redis_url, database_url, apps.Probe(), idle_wait_s=wakeup.IDLE_WAIT_S), redis_url
        ),
    }


async def bench_relay_latency(redis_url: str, database_url: str) -> list[float]:
    """From a transaction's commit to its job in Redis: the relay woken by NOTIFY (its sweep is 60 s)."""
    delays_ms: list[float] = []
    async with JobClient.open(redis_url=redis_url, database_url=database_url) as client:
        running = relay.OutboxRelay(
            pool=client.pool, redis=client.redis, dsn=database_url, queues=None, sweep_interval_s=60
        )
        running.start()
        await asyncio.sleep(0.3)
        for _ in range(LATENCY_SAMPLES):
            async with client.pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                enqueued = await client.enqueue(apps.NOOP, NoArgs(), conn=conn)
                await transaction.commit()
                committed = time.perf_counter()  # the clock starts at the commit, not at the pool's release
                # polling Redis is the measurement itself: it sees the job the moment the relay's push lands
                while not await client.redis.exists(job_key_prefix + enqueued.id):  # noqa: ASYNC110
                    await asyncio.sleep(0.0002)
                delays_ms.append((time.perf_counter() - committed) * 1000)
        await running.close()
    return delays_ms


async def with_fresh_stores(run: Callable[[str, str], Awaitable[Any]]) -> Any:
    name = f"millrace_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    conn = await store.pool.connect(database_url)
    await store.migrate.apply_migrations(conn)
    await conn.close()
    redis_url = await claim_redis_database()
    try:
        return await run(redis_url, database_url)
    finally:
        await redis.asyncio.Redis.from_url(redis_url).flushdb()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def claim_redis_database() -> str:
    for index in range(15, 0, -1):
        url = f"{REDIS_SERVER_URL}/{index}"
        if await redis.asyncio.Redis.from_url(url).dbsize() == 0:
            return url
    raise RuntimeError("no empty Redis database index for the benchmark")


ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


async def main() -> None:
    # both workers log warnings only: the figures compare the machinery, not console rendering
    configure_logging("console", "WARNING")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"no-op jobs: {JOBS}, worker concurrency {CONCURRENCY}, poll delay {POLL_DELAY_S}s")
    bare_runs, mill_runs = [], []
    for _ in range(ROUNDS):  # alternated, so that drift on the machine touches both alike
        bare_runs.append(await with_fresh_stores(lambda r, _d: bench_bare(r)))
        mill_runs.append(await with_fresh_stores(bench_millrace))
    bare, mill = median_of(bare_runs), median_of(mill_runs)
    ratios = [m["process_per_s"] / b["process_per_s"] for b, m in zip(bare_runs, mill_runs, strict=True)]
    print(f"medians of {ROUNDS} alternated rounds; processing ratio per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    lat = await with_fresh_stores(bench_latency)
    print("\nthroughput (jobs/s)              bare arq    millrace    ratio")
    print(
        f"  processing no-op jobs        {bare['process_per_s']:>10.0f}  {mill['process_per_s']:>10.0f}"
        f"    {mill['process_per_s'] / bare['process_per_s']:.2f}"
    )
    print(
        f"  enqueue, direct              {bare['enqueue_per_s']:>10.0f}  {mill['enqueue_per_s']:>10.0f}"
        f"    {mill['enqueue_per_s'] / bare['enqueue_per_s']:.2f}"
    )
    print(f"  enqueue, outbox (1 tx each)  {'-':>10}  {mill['outbox_enqueue_per_s']:>10.0f}")
    print(f"  relay delivery to Redis      {'-':>10}  {mill['relay_per_s']:>10.0f}")
    events, batches = mill["record_events"], mill["record_batches"]
    print(
        f"\nrecord writes: {events:.0f} attempt events in {batches:.0f} batches"
        f" ({events / max(batches, 1):.1f} events per batch of one or two statements)"
    )
    print(f"\nenqueue to start (ms), {LATENCY_SAMPLES} jobs one at a time     p50      p99")
    for name, delays in lat.items():
        print(f"  {name:<44} {statistics.median(delays):>7.1f}  {percentile(delays, 99):>7.1f}")
    idle = await with_fresh_stores(bench_idle)
    print(f"\nRedis commands a second from one idle worker, over {IDLE_WATCH_S:.0f} s")
    for name, rate in idle.items():
        print(f"  {name:<44} {rate:>7.1f}")
    relay_ms = await with_fresh_stores(bench_relay_latency)
    print(
        f"  {'outbox commit to job in Redis (relay on NOTIFY)':<44} {statistics.median(relay_ms):>7.1f}"
        f"  {percentile(relay_ms, 99):>7.1f}"
    )
    hooks = await with_fresh_stores(bench_webhook_endpoint)
    print(f"\nwebhook endpoint, one uvicorn process, {WEBHOOK_REQUESTS} signed deliveries per row:")
    for concurrency, figures in hooks.items():
        print(
            f"  concurrency {concurrency:>3}: {figures['requests_per_s']:>6.0f} requests/s,"
            f" p50 {figures['p50_ms']:>6.1f} ms, p99 {figures['p99_ms']:>6.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
