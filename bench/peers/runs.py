"""One measurement of one system: a drain of pre-enqueued jobs then a latency run, or the outbox enqueue.

Throughput. The producer enqueues N no-op jobs (that run gives the enqueue rate), then W worker processes
start and report ready, each held at its gate. The clock starts when the driver releases them all, and
stops when the last of the N jobs finished (the time the job itself noted; every system writes the job's
outcome right after it, in the same slot: arq's result, SAQ's status, BullMQ's completed set, Millrace's
record committed in PostgreSQL). jobs/s = N / that time. CPU is the workers' user+system time over the
same span, and separately the servers' (the Redis process, and for Millrace the database's backends).

Latency. The worker of the one-worker drain, once the drain is over and it has been idle for a second:
the producer sends stamp jobs one at a time, irregularly about `gap` apart, each carrying the time the
producer called enqueue; the job notes how long ago that was when it starts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from bench.peers.processes import PrivateRedis, SideProcess, cpu_seconds
from bench.peers.systems import System
from millrace import store

READY_TIMEOUT_S = 120.0
SETTLE_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    jobs: int
    concurrency: int
    producer_concurrency: int
    latency_samples: int
    gap_ms: float
    pg_pool: int


class Bench:
    def __init__(self, workload: Workload, redis_server: PrivateRedis, admin_url: str, folder: Path) -> None:
        self.workload = workload
        self.redis_server = redis_server
        self.redis = redis.asyncio.Redis.from_url(redis_server.url)
        self.admin_url = admin_url
        self.folder = folder
        self._logs = 0

    def _log(self, system: System, role: str) -> Path:
        self._logs += 1
        return self.folder / f"{self._logs:04d}-{system.key}-{role}.log"

    @asynccontextmanager
    async def _stores(self, system: System) -> AsyncIterator[dict[str, str]]:
        """An empty Redis, and for Millrace a fresh, migrated database dropped afterwards."""
        await self.redis.flushall()
        env = {
            "BENCH_REDIS_URL": self.redis_server.url,
            "BENCH_CONCURRENCY": str(self.workload.concurrency),
            "BENCH_PG_POOL": str(self.workload.pg_pool),
            **system.env,
        }
        if not system.durable:
            yield env
            return
        name = f"millrace_peers_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            database_url = self.admin_url.rsplit("/", 1)[0] + "/" + name
            conn = await store.pool.connect(database_url)
            await store.migrate.apply_migrations(conn)
            await conn.close()
            yield {**env, "BENCH_DATABASE_URL": database_url, "BENCH_DATABASE_NAME": name}
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    async def _produce(self, system: System, env: dict[str, str], *args: str) -> dict[str, Any]:
        producer = await SideProcess.start([*system.producer, *args], env, self._log(system, args[0]))
        try:
            results = await producer.finished(timeout_s=600)
        finally:
            await producer.stop()
        return results[-1]

    async def _workers(self, system: System, env: dict[str, str], count: int) -> list[SideProcess]:
        workers = [await SideProcess.start(list(system.worker), env, self._log(system, "worker")) for _ in range(count)]
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in workers)), READY_TIMEOUT_S)
        except TimeoutError:
            await asyncio.gather(*(w.stop() for w in workers))
            raise RuntimeError(f"{system.key}: a worker never said ready:\n{workers[0].tail()}") from None
        return workers

    async def _server_cpu(self, env: dict[str, str]) -> float:
        """CPU seconds so far of the Redis server and of the bench database's PostgreSQL backends."""
        total = cpu_seconds(self.redis_server.pid)
        if "BENCH_DATABASE_NAME" in env:
            admin = await asyncpg.connect(self.admin_url)
            try:
                rows = await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1", env["BENCH_DATABASE_NAME"]
                )
            finally:
                await admin.close()
            total += sum(cpu_seconds(r["pid"]) for r in rows)  # 0 where the server is on another machine
        return total

    async def _transactions(self, env: dict[str, str], *, settle: bool = False) -> int | None:
        """Millrace: the bench database's committed and rolled-back transactions so far, as PostgreSQL counts
        them. A backend reports its counts when it ends (and now and then before): read after the workers
        have exited, the count holds every statement of theirs."""
        if "BENCH_DATABASE_NAME" not in env:
            return None
        if settle:
            await asyncio.sleep(SETTLE_S)  # the workers' start-up statements are over, and not counted
        admin = await asyncpg.connect(self.admin_url)
        try:
            count: int = await admin.fetchval(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
                env["BENCH_DATABASE_NAME"],
            )
        finally:
            await admin.close()
        return count

    async def throughput(self, system: System, workers: int, stamps: int = 0) -> dict[str, Any]:
        """A drain of N jobs by `workers` processes; then, given `stamps`, the latency on the first of them."""
        jobs = self.workload.jobs
        async with self._stores(system) as env:
            enqueued = await self._produce(
                system, env, "produce", "--jobs", str(jobs), "--concurrency", str(self.workload.producer_concurrency)
            )
            running = await self._workers(system, env, workers)
            transactions = await self._transactions(env, settle=True)
            try:
                worker_cpu = sum(cpu_seconds(w.pid) for w in running)
                server_cpu = await self._server_cpu(env)
                released = time.time()
                for worker in running:
                    worker.go()
                await _until(lambda: sum(w.count for w in running) >= jobs, 300, f"{system.key}: drain", running)
                worker_cpu = sum(cpu_seconds(w.pid) for w in running) - worker_cpu
                server_cpu = await self._server_cpu(env) - server_cpu
                seconds = max(w.last for w in running) - released
                recorded = await self._records(env, jobs)
                if stamps:
                    await self._stamps(system, env, running[0], stamps)
            finally:
                await asyncio.gather(*(w.stop() for w in running))
            after = await self._transactions(env)
        figures = {
            "workers": workers,
            "jobs_per_s": jobs / seconds,
            "drain_s": seconds,
            "enqueue_per_s": jobs / enqueued["seconds"],
            "worker_cpu_ms_per_job": worker_cpu * 1000 / jobs,
            "server_cpu_ms_per_job": server_cpu * 1000 / jobs,
            "per_worker_jobs": [w.count for w in running],
            "latency_ms": running[0].stamps_ms,
        }
        if recorded is not None:
            figures["records_succeeded"] = recorded
        if transactions is not None and after is not None:
            # every statement of the drain, the heartbeats' and the stamps' included; each is a round trip
            figures["db_transactions_per_job"] = (after - transactions) / (jobs + stamps)
        return figures

    async def _records(self, env: dict[str, str], jobs: int) -> int | None:
        """Millrace: how many records PostgreSQL holds as succeeded once the drain is over (a check)."""
        if "BENCH_DATABASE_URL" not in env:
            return None
        conn = await asyncpg.connect(env["BENCH_DATABASE_URL"])
        try:
            count: int = await conn.fetchval("SELECT count(*) FROM millrace_jobs WHERE status = 'succeeded'")
        finally:
            await conn.close()
        return count

    async def _stamps(self, system: System, env: dict[str, str], worker: SideProcess, samples: int) -> None:
        await asyncio.sleep(SETTLE_S)  # the drain is over: the worker is idle again
        gap = str(self.workload.gap_ms)
        await self._produce(system, env, "stamps", "--samples", str(samples), "--gap-ms", gap)
        await _until(lambda: len(worker.stamps_ms) >= samples, 30, f"{system.key}: stamps", [worker])

    async def outbox(self, system: System) -> float:
        """Millrace only: jobs a second enqueued each inside a transaction of its own (no worker runs)."""
        jobs = max(self.workload.jobs // 5, 1)
        async with self._stores(system) as env:
            enqueued = await self._produce(
                system, env, "outbox", "--jobs", str(jobs), "--concurrency", str(self.workload.producer_concurrency)
            )
        return jobs / float(enqueued["seconds"])

    async def close(self) -> None:
        await self.redis.aclose()


async def _until(condition: Any, timeout_s: float, what: str, watched: Iterable[SideProcess]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(w.tail() for w in watched)
            raise TimeoutError(f"{what} did not finish in {timeout_s:.0f} s\n{tails}")
        for worker in watched:
            if worker.process.returncode is not None:
                raise RuntimeError(f"{what}: a worker exited with {worker.process.returncode}\n{worker.tail()}")
        await asyncio.sleep(0.02)  # the finish times are the workers' own: this only notices them
