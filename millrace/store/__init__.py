"""The runtime's own persistence: its SQL, one repository per table group, and its migration series."""

from millrace.store import attempts, cron, groups, jobs, migrate, outbox, pool, workers

__all__ = ["attempts", "cron", "groups", "jobs", "migrate", "outbox", "pool", "workers"]
