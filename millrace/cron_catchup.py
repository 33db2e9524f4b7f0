"""Ticks missed while every worker of a queue was down: run the latest one once, or skip, as declared."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from arq.cron import next_cron

from millrace import dispatch, store
from millrace.clock import CLOCK
from millrace.declare import CronDefinition, CronSchedule
from millrace.runtime import WorkerRuntime
from millrace.store.cron import DeclaredSchedule

log = structlog.get_logger(__name__)

# A tick closer to now than this is arq's own scheduler's to run, not a missed one.
_SCHEDULER_WINDOW = timedelta(seconds=2)
_MAX_STEPS = 100_000


def arq_cron_name(definition: CronDefinition[Any]) -> str:
    return f"cron:{definition.name}"


def declared(definition: CronDefinition[Any]) -> DeclaredSchedule:
    """A schedule as the cron ledger reads it back (schedule_of)."""
    fields = {
        name: sorted(value) if isinstance(value, set) else value
        for name, value in definition.schedule.arq_fields().items()
        if name != "microsecond"
    }
    return DeclaredSchedule(name=definition.name, queue=definition.queue.name, fields=fields, missed=definition.missed)


def schedule_of(declared: DeclaredSchedule) -> CronSchedule:
    fields = {name: set(value) if isinstance(value, list) else value for name, value in declared.fields.items()}
    return CronSchedule(**fields)


def next_tick(schedule: CronSchedule, after: datetime) -> datetime:
    return next_cron(after, **schedule.arq_fields())


def latest_missed_tick(schedule: CronSchedule, last_run: datetime, now: datetime) -> datetime | None:
    """The last tick after `last_run` that is already past, or None when none was missed."""
    horizon = now - _SCHEDULER_WINDOW
    missed = None
    tick = next_tick(schedule, last_run)
    for _ in range(_MAX_STEPS):
        if tick >= horizon:
            break
        missed = tick
        tick = next_tick(schedule, tick)
    return missed


async def catch_up(runtime: WorkerRuntime[Any], crons: Sequence[CronDefinition[Any]], now: datetime) -> None:
    """Enqueue one run of the latest missed tick of each `run_once` cron; every worker may call this.

    The run's id is the tick's own arq id, so several workers starting together enqueue it once, and
    the tick claim in PostgreSQL stops a second run if arq's scheduler got there too.
    """
    for definition in crons:
        if definition.missed != "run_once":
            continue
        async with runtime.pool.acquire() as conn:
            last_run = await store.cron.find_last_tick(conn, definition.name)
        missed = None if last_run is None else latest_missed_tick(definition.schedule, last_run, now)
        if missed is None:
            continue
        name = arq_cron_name(definition)
        job = dispatch.build(
            redis_job_id=f"{name}:{int(missed.timestamp() * 1000)}",
            queue=runtime.queue.name,
            function=name,
            arq_args=[],
            enqueued_at=CLOCK.now(),
            run_at=None,
        )
        await dispatch.push(runtime.redis, [job])
        log.info("cron_missed_tick_enqueued", cron=definition.name, tick_at=missed.isoformat())
