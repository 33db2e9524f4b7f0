"""The cron ledger: every schedule's expected ticks against the ticks that ran.

Expected ticks come from the schedule itself (arq's next_cron, as the workers compute them); ticks that
ran come from millrace_cron_ticks, whose primary key is what makes a tick run once. A tick expected but
absent was missed: no worker of its queue ran at that time (all stopped, or the queue paused), or, for a
schedule with missed="skip", a worker that came back did not run it late on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from millrace import store
from millrace.cron_catchup import next_tick, schedule_of
from millrace.declare import CronSchedule
from millrace.store.cron import DeclaredSchedule
from millrace.store.pool import Executor

#: a schedule that ticks more often than this in the window is summarised, not listed tick by tick
MAX_TICKS_LISTED = 2000


@dataclass(slots=True, kw_only=True)
class CronLedger:
    name: str
    queue: str
    schedule: str
    missed_policy: str
    expected: int = 0
    ran: int = 0
    missed: list[datetime] = field(default_factory=list)
    last_tick: datetime | None = None
    last_status: str | None = None
    last_job_id: str | None = None
    next_tick: datetime | None = None
    why_missed: str = ""


async def cron_ledger(conn: Executor, now: datetime, window: timedelta) -> list[CronLedger]:
    """Every schedule the workers declared (store.cron.declare_schedules), over the last `window`."""
    since = now - window
    ledgers = []
    for definition in await store.cron.declared_schedules(conn):
        schedule = schedule_of(definition)
        ran = await store.insights.cron_ticks(conn, definition.name, since)
        ran_at = {tick for tick, _, _ in ran}
        # a tick is expected only once a worker could have run it: not before the first tick on record
        first_known = min(ran_at) if ran_at else None
        expected = _expected_ticks(schedule, max(since, first_known) if first_known else now, now)
        ledger = CronLedger(
            name=definition.name,
            queue=definition.queue,
            schedule=_describe(definition),
            missed_policy=definition.missed,
            expected=len(expected),
            ran=len(ran_at & set(expected)) if expected else 0,
            missed=[t for t in expected if t not in ran_at][-20:],
            next_tick=next_tick(schedule, now),
        )
        if ran:
            ledger.last_tick, ledger.last_job_id, ledger.last_status = ran[-1]
        if ledger.missed:
            ledger.why_missed = (
                "no worker of the queue ran at that time (all stopped, or the queue paused)"
                if definition.missed == "run_once"
                else "no worker of the queue ran at that time; missed='skip' runs no missed tick late"
            )
        ledgers.append(ledger)
    return ledgers


def _expected_ticks(schedule: CronSchedule, since: datetime, now: datetime) -> list[datetime]:
    ticks: list[datetime] = []
    tick = next_tick(schedule, since - timedelta(microseconds=1))
    while tick <= now and len(ticks) < MAX_TICKS_LISTED:
        ticks.append(tick)
        tick = next_tick(schedule, tick)
    return ticks


def _describe(definition: DeclaredSchedule) -> str:
    parts = [f"{name}={_field(value)}" for name, value in definition.fields.items() if value is not None]
    return " ".join(parts) or "every second"


def _field(value: object) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
