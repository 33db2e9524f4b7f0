"""A small application of test jobs, run by in-process workers and by real `arq` processes alike.

It stands for a second service adopting the runtime: it uses only the public API (`import millrace`),
its own queue and its own migration series, and nothing of the demo application (a test checks).
Each job writes what it did to the `test_effects` table, so a test reads the effects from PostgreSQL
whichever process ran the job.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
import structlog

from millrace import (
    Cap,
    CronSchedule,
    JobArgs,
    JobClient,
    JobContext,
    JobRef,
    MigrationSeries,
    NoArgs,
    Pool,
    Queue,
    RateLimit,
    RetryAfter,
    RetryPolicy,
    cron,
    exponential,
    fixed,
    job,
)

log = structlog.get_logger(__name__)

TESTQ = Queue(name="testq", concurrency=4, timeout_s=5)

MIGRATIONS = MigrationSeries("sample", "tests.sample")


@dataclass(frozen=True, slots=True)
class SampleServices:
    db: Pool
    #: one client per worker process: building one per call costs milliseconds of CPU (its TLS context)
    http: httpx.AsyncClient


@asynccontextmanager
async def open_services(jobs: JobClient) -> AsyncIterator[SampleServices]:
    async with httpx.AsyncClient(timeout=2) as http:
        yield SampleServices(db=jobs.pool, http=http)


async def note(ctx: JobContext[SampleServices], kind: str) -> None:
    async with ctx.services.db.acquire() as conn:
        await conn.execute(
            "INSERT INTO test_effects (job_id, attempt, kind, tick_at, worker) VALUES ($1, $2, $3, $4, $5)",
            ctx.job_id,
            ctx.attempt,
            kind,
            ctx.tick_at,
            ctx.worker,
        )


class FlakyArgs(JobArgs):
    #: attempts (over the job's whole life) that fail before one succeeds
    fail_times: int
    error: Literal["retryable", "give_up"] = "retryable"
    note: str = ""


class SleepArgs(JobArgs):
    seconds: float


NOOP = JobRef("noop", TESTQ, NoArgs)
FLAKY = JobRef("flaky", TESTQ, FlakyArgs)
SLEEPY = JobRef("sleepy", TESTQ, SleepArgs)
HANG = JobRef("hang", TESTQ, NoArgs)
THROTTLED = JobRef("throttled", TESTQ, NoArgs)
SCHEDULED_BACKOFF = JobRef("scheduled_backoff", TESTQ, NoArgs)

QUICK_RETRY = RetryPolicy(attempts=3, backoff=fixed(0.05), give_up_on=(PermissionError,))


@job(NOOP)
async def noop(ctx: JobContext[SampleServices], args: NoArgs) -> None:
    pass


@job(FLAKY, retry=QUICK_RETRY)
async def flaky(ctx: JobContext[SampleServices], args: FlakyArgs) -> None:
    await note(ctx, "ran")
    log.info("flaky_ran")
    if ctx.attempt <= args.fail_times:
        raise PermissionError("not allowed") if args.error == "give_up" else ConnectionError("provider down")


@job(SLEEPY, retry=QUICK_RETRY, timeout_s=3)
async def sleepy(ctx: JobContext[SampleServices], args: SleepArgs) -> None:
    await note(ctx, "start")
    await asyncio.sleep(args.seconds)
    await note(ctx, "end")


@job(HANG, retry=RetryPolicy(attempts=2, backoff=fixed(0.05)), timeout_s=0.3)
async def hang(ctx: JobContext[SampleServices], args: NoArgs) -> None:
    await note(ctx, "ran")
    await asyncio.sleep(60)


@job(THROTTLED, retry=RetryPolicy(attempts=3, backoff=fixed(30)))
async def throttled(ctx: JobContext[SampleServices], args: NoArgs) -> None:
    """Like a provider answering 429 with Retry-After: 0.4 the first time."""
    await note(ctx, "ran")
    if ctx.attempt == 1:
        raise RetryAfter(0.4)


# The field's example, scaled down 1:20: fail, wait ~0.5 s, fail, wait ~3 s, succeed.
@job(SCHEDULED_BACKOFF, retry=RetryPolicy(attempts=3, backoff=exponential(first_s=0.5, factor=6, jitter=0.1)))
async def scheduled_backoff(ctx: JobContext[SampleServices], args: NoArgs) -> None:
    await note(ctx, "ran")
    if ctx.attempt < 3:
        raise ConnectionError("provider down")


class BlockArgs(JobArgs):
    seconds: float


BLOCK_LOOP = JobRef("block_loop", TESTQ, BlockArgs)
KILL_OWN_WORKER = JobRef("kill_own_worker", TESTQ, NoArgs)
GUARDED = JobRef("guarded", TESTQ, SleepArgs)
POISON_POLICY = RetryPolicy(attempts=2, backoff=fixed(0.05))


@job(BLOCK_LOOP, retry=POISON_POLICY, timeout_s=60)
async def block_loop(ctx: JobContext[SampleServices], args: BlockArgs) -> None:
    """A blocking call where an await belongs: nothing else runs on the worker meanwhile."""
    await note(ctx, "start")
    time.sleep(args.seconds)  # noqa: ASYNC251 -- the point of the job: the watchdog must catch it


@job(KILL_OWN_WORKER, retry=POISON_POLICY)
async def kill_own_worker(ctx: JobContext[SampleServices], args: NoArgs) -> None:
    """Like a job that segfaults a C extension or exhausts memory: its process dies under it."""
    await note(ctx, "start")
    os.kill(os.getpid(), signal.SIGKILL)


@job(GUARDED, retry=QUICK_RETRY, timeout_s=30)
async def guarded(ctx: JobContext[SampleServices], args: SleepArgs) -> None:
    """Sleeps (a worker may be frozen or cut off meanwhile), then makes its one guarded effect."""
    await note(ctx, "start")
    await asyncio.sleep(args.seconds)
    async with ctx.services.db.acquire() as conn, conn.transaction():
        if await ctx.first_time(conn):
            await conn.execute(
                "INSERT INTO test_guarded_effects (job_id, attempt, worker) VALUES ($1, $2, $3)",
                ctx.job_id,
                ctx.attempt,
                ctx.worker,
            )
    await note(ctx, "end")


GUARDED_SLOW = JobRef("guarded_slow", TESTQ, SleepArgs)


@job(GUARDED_SLOW, retry=QUICK_RETRY, timeout_s=30)
async def guarded_slow(ctx: JobContext[SampleServices], args: SleepArgs) -> None:
    """An effect that takes a while inside its guarded transaction: the job's row is held all that time
    (a worker frozen there holds it for as long as the freeze lasts)."""
    async with ctx.services.db.acquire() as conn, conn.transaction():
        if await ctx.first_time(conn):
            await asyncio.sleep(args.seconds)
            await conn.execute(
                "INSERT INTO test_guarded_effects (job_id, attempt, worker) VALUES ($1, $2, $3)",
                ctx.job_id,
                ctx.attempt,
                ctx.worker,
            )


class CallArgs(JobArgs):
    url: str


CALL_PROVIDER = JobRef("call_provider", TESTQ, CallArgs)
#: the header in which a call says when it was sent (time.time() in the worker)
SENT_AT = "x-sent-at"
#: the provider's limit, shared by every worker process
PROVIDER_LIMIT = RateLimit("sample-provider", calls=20, per_s=1.0)
#: long enough to outlast a five-minute outage: 0.5 s doubling to 30 s, twenty attempts
STORM_POLICY = RetryPolicy(attempts=20, backoff=exponential(first_s=0.5, factor=2, cap_s=30, jitter=0.2))


@job(CALL_PROVIDER, retry=STORM_POLICY, rate_limit=PROVIDER_LIMIT, timeout_s=10)
async def call_provider(ctx: JobContext[SampleServices], args: CallArgs) -> None:
    # the call first: anything before it (a database write) would shift it off its slot; it says when it
    # was sent, which is what the rate limit spaces (the provider's own arrival stamps add its jitter)
    response = await ctx.services.http.post(
        args.url, json={"job_id": ctx.job_id, "attempt": ctx.attempt}, headers={SENT_AT: repr(time.time())}
    )
    await note(ctx, "call")
    if response.status_code == 429:
        raise RetryAfter(float(response.headers.get("retry-after", "1")), "the provider rate-limited us")
    if response.status_code >= 500:
        raise ConnectionError(f"the provider answered {response.status_code}")
    response.raise_for_status()


class TenantArgs(JobArgs):
    tenant: str
    seconds: float


TENANT_WORK = JobRef("tenant_work", TESTQ, TenantArgs)
#: a fair share: no tenant holds more than two of the queue's places, across every worker
TENANT_SHARE = Cap("sample-tenant-share", 2, per_arg="tenant")


@job(TENANT_WORK, retry=QUICK_RETRY, cap=TENANT_SHARE)
async def tenant_work(ctx: JobContext[SampleServices], args: TenantArgs) -> None:
    await note(ctx, "start")
    await asyncio.sleep(args.seconds)


CAPPED_CALL = JobRef("capped_call", TESTQ, CallArgs)
#: at most two calls in flight, across every worker
PROVIDER_CAP = Cap("sample-provider-cap", 2)


@job(CAPPED_CALL, retry=QUICK_RETRY, cap=PROVIDER_CAP)
async def capped_call(ctx: JobContext[SampleServices], args: CallArgs) -> None:
    response = await ctx.services.http.post(args.url, json={"job_id": ctx.job_id})
    response.raise_for_status()


class DoomedArgs(JobArgs):
    error: str = "retry"


DOOMED = JobRef("doomed", TESTQ, DoomedArgs)


async def mark_doomed_dead(ctx: JobContext[SampleServices], args: DoomedArgs, reason: str) -> None:
    await note(ctx, f"dead:{reason}")


@job(DOOMED, retry=QUICK_RETRY, on_dead=mark_doomed_dead)
async def doomed(ctx: JobContext[SampleServices], args: DoomedArgs) -> None:
    """Fails every time: its dead hook says so once, whichever way it died."""
    raise PermissionError("not allowed") if args.error == "give_up" else ConnectionError("provider down")


class LabelArgs(JobArgs):
    label: str


GROUP_DONE = JobRef("group_done", TESTQ, LabelArgs)


@job(GROUP_DONE)
async def group_done(ctx: JobContext[SampleServices], args: LabelArgs) -> None:
    """A fan-in follow-up: it runs once when every child of its group has ended."""
    await note(ctx, f"then:{args.label}")


class CountArgs(JobArgs):
    rows: int
    seconds: float


COUNT_ROWS = JobRef("count_rows", TESTQ, CountArgs)


@job(COUNT_ROWS)
async def count_rows(ctx: JobContext[SampleServices], args: CountArgs) -> None:
    """Reports progress after every row, as an import would, spread over `seconds`."""
    pause_every = max(1, args.rows // 20)
    for row in range(1, args.rows + 1):
        ctx.progress(row, args.rows, f"row {row}")
        if row % pause_every == 0:
            await asyncio.sleep(args.seconds / 20)


@cron(queue=TESTQ, schedule=CronSchedule(second=None), missed="run_once")
async def every_second(ctx: JobContext[SampleServices]) -> None:
    await note(ctx, "tick")


@cron(queue=TESTQ, schedule=CronSchedule(second=set(range(0, 60, 2))), missed="skip")
async def every_other_second(ctx: JobContext[SampleServices]) -> None:
    """Ticks missed while no worker ran are skipped, not caught up."""
    await note(ctx, "skip_tick")
