"""Maintenance: keeping the job records table to a useful size, with the pruning the runtime provides."""

from __future__ import annotations

from millrace import CronSchedule, maintenance
from producers.maintenance import PRUNE_JOB_RECORDS
from queues import MAINTENANCE

prune_job_records = maintenance.prune_job(PRUNE_JOB_RECORDS)

# Every night at 03:00 UTC; a night missed while the workers were down is made up once.
nightly_prune_job_records = maintenance.prune_cron(
    queue=MAINTENANCE, schedule=CronSchedule(hour=3, minute=0), keep_days=30, missed="run_once"
)
