"""The jobs the benchmark runs: a no-op for bare arq, and the same no-op declared through Millrace."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from millrace.client import JobClient
from millrace.context import JobContext
from millrace.declare import JobArgs, JobRef, NoArgs, job
from millrace.queues import Queue

BENCH = Queue(name="bench", concurrency=10, timeout_s=30)


class StampArgs(JobArgs):
    sent_at: float


NOOP = JobRef("bench_noop", BENCH, NoArgs)
STAMP = JobRef("bench_stamp", BENCH, StampArgs)


@dataclass(slots=True)
class Probe:
    """Collects enqueue-to-start delays, in the benchmark's own process."""

    delays_ms: list[float] = field(default_factory=list)


@asynccontextmanager
async def open_probe(_jobs: JobClient, probe: Probe) -> AsyncIterator[Probe]:
    yield probe


@job(NOOP)
async def bench_noop(ctx: JobContext[Probe], args: NoArgs) -> None:
    pass


@job(STAMP)
async def bench_stamp(ctx: JobContext[Probe], args: StampArgs) -> None:
    ctx.services.delays_ms.append((time.time() - args.sent_at) * 1000)


async def bare_noop(ctx: dict[str, Any]) -> None:
    pass


async def bare_stamp(ctx: dict[str, Any], sent_at: float) -> None:
    ctx["probe"].delays_ms.append((time.time() - sent_at) * 1000)
