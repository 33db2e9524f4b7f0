"""`python -m bench.peers`: one table of Millrace beside arq, SAQ and BullMQ, saved under bench/results/.

The same workload for every system: N no-op jobs enqueued first by one producer process (50 tasks),
then drained by one and by two worker processes of concurrency 100; enqueue-to-start latency on one idle
worker; worker CPU per job. Rounds alternate the systems (A B C ... A B C ...), and each figure is the
median of its rounds. Everything runs against a Redis server of the bench's own; Millrace's records go
to a fresh database on TEST_DATABASE_URL's server for each run.

    BENCH_PEER_JOBS=10000 BENCH_PEER_ROUNDS=3 BENCH_PEER_LATENCY_SAMPLES=200 (over all rounds)
    BENCH_PEER_PG_POOL=10 (each Millrace process's pool) BENCH_PEER_SYSTEMS=saq,millrace-wake (a subset)
    BENCH_PEER_KEEP_LOGS=1 keeps the processes' standard error (kept anyway when a run fails)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio

from bench.peers import envs, report
from bench.peers.processes import PrivateRedis
from bench.peers.runs import Bench, Workload
from bench.peers.systems import System, all_systems, version
from millrace.logs import configure_logging

ADMIN_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def workload_from_env() -> Workload:
    return Workload(
        jobs=int(os.environ.get("BENCH_PEER_JOBS", "10000")),
        concurrency=100,
        producer_concurrency=50,
        latency_samples=int(os.environ.get("BENCH_PEER_LATENCY_SAMPLES", "200")),
        gap_ms=30.0,
        pg_pool=int(os.environ.get("BENCH_PEER_PG_POOL", "10")),
    )


async def machine(redis_url: str) -> dict[str, Any]:
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        redis_version = (await client.info("server"))["redis_version"]
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        postgres_version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis": redis_version,
        "postgresql": postgres_version,
        "load_average_at_start": os.getloadavg(),
    }


async def run_rounds(bench: Bench, systems: list[System], rounds: int) -> dict[str, Any]:
    raw: dict[str, Any] = {
        s.key: {"one_worker": [], "two_workers": [], "latency_ms": [], "outbox_per_s": []} for s in systems
    }
    samples = math.ceil(bench.workload.latency_samples / rounds)
    for number in range(1, rounds + 1):
        for workers, slot in ((1, "one_worker"), (2, "two_workers")):
            for system in systems:
                # latency on an idle worker: the one that drained the jobs, once it is done
                figures = await bench.throughput(system, workers, stamps=samples if workers == 1 else 0)
                if workers == 1:
                    raw[system.key]["latency_ms"].append(figures.pop("latency_ms"))  # one list a round
                else:
                    figures.pop("latency_ms")
                raw[system.key][slot].append(figures)
                print(
                    f"round {number}/{rounds}  {system.key:<14} {workers} worker(s):"
                    f" {figures['jobs_per_s']:>6.0f} jobs/s  enqueue {figures['enqueue_per_s']:>6.0f}/s"
                    f"  CPU {figures['worker_cpu_ms_per_job']:.3f} ms/job",
                    flush=True,
                )
        # one Millrace row is enough: both run the same producer, only their workers differ
        for system in [s for s in systems if s.durable][:1]:
            raw[system.key]["outbox_per_s"].append(await bench.outbox(system))
            print(f"round {number}/{rounds}  Millrace's enqueue through the outbox measured", flush=True)
    return raw


def _finite(value: Any) -> Any:
    """JSON without NaN: a figure that could not be taken is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def measure(workload: Workload, systems: list[System], rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every round against one private Redis; returns the machine's description and the raw figures."""
    folder = Path(tempfile.mkdtemp(prefix="millrace-peers-"))
    redis_server = PrivateRedis(folder)
    bench = Bench(workload, redis_server, ADMIN_DATABASE_URL, folder)
    try:
        info = await machine(redis_server.url)
        print(
            f"{workload.jobs} no-op jobs, concurrency {workload.concurrency} per worker process, {rounds} rounds;"
            f" private redis-server {info['redis']} on port {redis_server.port}; process logs in {folder}",
            flush=True,
        )
        raw = await run_rounds(bench, systems, rounds)
    finally:
        await bench.close()
        redis_server.stop()
    if not os.environ.get("BENCH_PEER_KEEP_LOGS"):
        shutil.rmtree(folder, ignore_errors=True)  # kept when a run fails: its processes' logs are there
    return info, raw


def main() -> None:
    # no options: the environment above sets the run; this only answers --help instead of starting one
    argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    configure_logging("console", "WARNING")  # the migrations of each fresh database say nothing
    began = time.monotonic()
    created = datetime.now(UTC)
    workload = workload_from_env()
    rounds = int(os.environ.get("BENCH_PEER_ROUNDS", "3"))
    chosen = os.environ.get("BENCH_PEER_SYSTEMS", "")
    only = {key.strip() for key in chosen.split(",")} if chosen else None
    systems = all_systems(workload.concurrency, only)  # installs the peers' environments on first use
    versions = {s.key: version(s) for s in systems}
    node = shutil.which("node")
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else None
    info, raw = asyncio.run(measure(workload, systems, rounds))
    info["node"] = node_version
    info["load_average_at_end"] = os.getloadavg()
    summary = report.summarize(raw)
    elapsed_s = time.monotonic() - began
    header = (
        f"{workload.jobs} no-op jobs, medians of {rounds} rounds, {info['cores']} cores, Python {info['python']},"
        f" Redis {info['redis']}, PostgreSQL {info['postgresql']}; {elapsed_s / 60:.1f} min"
    )
    text = report.table(systems, summary, header)
    print()
    print(text)
    document = {
        "created": created.isoformat(),
        "elapsed_s": elapsed_s,
        "machine": info,
        "versions": versions,
        "workload": {**dataclasses.asdict(workload), "rounds": rounds},
        "systems": {s.key: s.label for s in systems},
        "summary": summary,
        "ratios_millrace_wake_over_row": report.ratios(summary),
        "table": text,
        "raw": raw,
    }
    path = report.save(_finite(document), created)
    print(f"\nsaved {path.relative_to(envs.ROOT)}")


if __name__ == "__main__":
    main()
