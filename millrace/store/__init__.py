"""The runtime's own persistence: its SQL, one repository per table group, and its migration series."""

from millrace.store import cron, jobs, migrate, outbox, pool

__all__ = ["cron", "jobs", "migrate", "outbox", "pool"]
