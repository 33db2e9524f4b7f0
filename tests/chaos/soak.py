"""Scenario 9, soak: the demo's flows at twice the demo's peak (two users a second, where `make run`'s
load sends one), through the web app to one worker per queue. The backlog stays flat, worker memory grows
less than 10 %, Redis memory stays flat and the p99 wait before start stays under 2 s."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio
from pydantic import SecretStr

from millrace import Pool
from scripts.demo_load import one_user
from settings import Settings
from tests.chaos.harness import pass_line, pick
from tests.platform import WEBHOOK_SECRET, Platform, running_platform
from tests.processes import wait_for

USERS_PER_S = 2
DURATION_S = pick(60, 1800)
SAMPLE_EVERY_S = pick(5, 30)
#: Redis keeps a finished job's result this long (arq's memory of it; the record is in PostgreSQL): the
#: soak's steady state starts once results expire as fast as they come
KEEP_RESULT_S = 30
WARM_UP_S = pick(20, 120)


@dataclass
class Samples:
    backlog: list[int] = field(default_factory=list)
    redis_bytes: list[int] = field(default_factory=list)
    worker_rss_kib: list[int] = field(default_factory=list)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def sample(pool: Pool, redis_client: redis.asyncio.Redis, platform: Platform, into: Samples) -> None:
    pending = await pool.fetchval(
        "SELECT count(*) FROM millrace_jobs WHERE status IN ('queued', 'deferred', 'retrying', 'in_progress')"
    )
    into.backlog.append(int(pending))
    into.redis_bytes.append(int((await redis_client.info("memory"))["used_memory"]))
    into.worker_rss_kib.append(sum(rss_kib(w.pid) for w in platform.workers))


async def drive(platform: Platform, seconds: float) -> int:
    settings = Settings(webhook_secrets={"stripe": [SecretStr(WEBHOOK_SECRET)]})
    users = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        tick = time.monotonic()
        await asyncio.gather(*(one_user(platform.http, settings, users + n) for n in range(USERS_PER_S)))
        users += USERS_PER_S
        await asyncio.sleep(max(0.0, 1 - (time.monotonic() - tick)))
    return users


async def p99_wait_s(pool: Pool, since: float) -> float:
    rows = await pool.fetch(
        """SELECT extract(epoch FROM a.started_at - j.enqueued_at) AS s
           FROM millrace_job_attempts a JOIN millrace_jobs j ON j.id = a.job_id
           WHERE a.attempt = 1 AND j.enqueued_at > to_timestamp($1)""",
        since,
    )
    return statistics.quantiles([float(r["s"]) for r in rows], n=100)[-1]


def growth(values: list[int]) -> float:
    return values[-1] / values[0] - 1


async def run_soak(pool: Pool, database_url: str, redis_url: str, folder: Path) -> None:
    extra = {"KEEP_RESULT_S": str(KEEP_RESULT_S), "LOG_LEVEL": "WARNING"}
    async with (
        running_platform(database_url, redis_url, folder, extra_env=extra) as platform,
        redis.asyncio.Redis.from_url(redis_url) as redis_client,
    ):
        samples = Samples()
        load = asyncio.create_task(drive(platform, WARM_UP_S + DURATION_S))
        await asyncio.sleep(WARM_UP_S)
        steady_since = time.time()
        while not load.done():
            await sample(pool, redis_client, platform, samples)
            await asyncio.sleep(SAMPLE_EVERY_S)
        users = await load
        await wait_for(lambda: drained(pool), timeout_s=120, what="the backlog to drain")
        p99 = await p99_wait_s(pool, steady_since)
        jobs = await pool.fetchval(
            "SELECT count(*) FROM millrace_jobs WHERE enqueued_at > to_timestamp($1)", steady_since
        )
    half = len(samples.backlog) // 2
    backlog_early, backlog_late = max(samples.backlog[:half]), max(samples.backlog[half:])
    assert backlog_late <= 2 * backlog_early + 20, samples.backlog
    assert growth(samples.worker_rss_kib) < 0.10, samples.worker_rss_kib
    assert growth(samples.redis_bytes) < 0.10, samples.redis_bytes
    assert p99 < 2.0, p99
    pass_line(
        "9 soak",
        minutes=f"{DURATION_S / 60:.0f}",
        users=users,
        jobs_in_steady_state=jobs,
        jobs_per_s=f"{jobs / DURATION_S:.1f}",
        backlog_max_first_half=backlog_early,
        backlog_max_second_half=backlog_late,
        worker_rss_growth=f"{growth(samples.worker_rss_kib):+.1%}",
        redis_memory_growth=f"{growth(samples.redis_bytes):+.1%}",
        p99_wait_s=f"{p99:.3f}",
        samples=json.dumps(len(samples.backlog)),
    )


async def drained(pool: Pool) -> bool:
    pending = await pool.fetchval(
        "SELECT count(*) FROM millrace_jobs WHERE status IN ('queued', 'deferred', 'retrying', 'in_progress')"
    )
    return int(pending) == 0
