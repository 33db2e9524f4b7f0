"""Producers for the scheduled business jobs; the cron functions run the same work on their tick."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from millrace import JobArgs, JobRef
from queues import MAINTENANCE


class PeriodArgs(JobArgs):
    #: the period's first day (a weekly summary's Monday); a rerun for the same period sends nothing twice
    period_start: dt.date
    batch_size: int = Field(default=1000, ge=1, le=10_000)


class AsOfArgs(JobArgs):
    as_of: dt.datetime
    batch_size: int = Field(default=1000, ge=1, le=10_000)


SEND_DAILY_SUMMARIES = JobRef("send_daily_summaries", MAINTENANCE, PeriodArgs)
SEND_WEEKLY_SUMMARIES = JobRef("send_weekly_summaries", MAINTENANCE, PeriodArgs)
EXPIRE_TRIALS = JobRef("expire_trials", MAINTENANCE, AsOfArgs)
REMIND_UNPAID_INVOICES = JobRef("remind_unpaid_invoices", MAINTENANCE, AsOfArgs)
