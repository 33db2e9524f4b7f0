"""The runtime's own persistence: its SQL, one repository per table group, and its migration series."""

from millrace.store import attempts, cron, groups, insights, jobs, migrate, outbox, pool, queues, statistics, workers

__all__ = [
    "attempts",
    "cron",
    "groups",
    "insights",
    "jobs",
    "migrate",
    "outbox",
    "pool",
    "queues",
    "statistics",
    "workers",
]
