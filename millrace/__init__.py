"""Millrace: background jobs on arq, with PostgreSQL as the source of truth.

The public API. An application declares its queues (`Queue`), its jobs' references (`JobRef`, with a
`JobArgs` model) and bodies (`@job`, `@cron`), builds one arq settings class per queue
(`worker_settings`), enqueues through a `JobClient`, and runs the runtime's commands (`cli.run`) with
its own migration series (`MigrationSeries`). Everything else in the package is the runtime's own.
"""

from millrace import cli, maintenance, status
from millrace.caps import Cap
from millrace.cli import Application
from millrace.client import DeadRetried, EnqueuedGroup, EnqueuedJob, JobClient
from millrace.context import JobContext
from millrace.declare import (
    CronDefinition,
    CronSchedule,
    JobArgs,
    JobDefinition,
    JobRef,
    NoArgs,
    collect,
    collect_refs,
    cron,
    job,
)
from millrace.errors import (
    AlreadyExists,
    ConfigurationError,
    CorruptPayload,
    GiveUp,
    InvalidJobArguments,
    JobTimedOut,
    MillraceError,
    NotFound,
    QueueFull,
    RetryAfter,
)
from millrace.limits import RateLimit
from millrace.logs import LogFormat, configure_logging
from millrace.maintenance import PruneJobRecordsArgs
from millrace.outages import OUTAGES, UNREACHABLE
from millrace.queues import Queue
from millrace.records import (
    ALL_STATUSES,
    PENDING_STATUSES,
    AttemptRecord,
    GroupStatus,
    JobRecord,
    JobStatus,
    Outcome,
    Progress,
)
from millrace.retry import NO_RETRY, Backoff, RetryPolicy, exponential, fixed
from millrace.store.migrate import MigrationSeries, apply_migrations
from millrace.store.pool import TRANSIENT_ERRORS, Connection, Executor, Pool, connect, create_pool
from millrace.text import unstorable_text
from millrace.worker import ServicesFactory, WorkerConfig, worker_settings

__all__ = [
    "ALL_STATUSES",
    "NO_RETRY",
    "OUTAGES",
    "PENDING_STATUSES",
    "TRANSIENT_ERRORS",
    "UNREACHABLE",
    "AlreadyExists",
    "Application",
    "AttemptRecord",
    "Backoff",
    "Cap",
    "ConfigurationError",
    "Connection",
    "CorruptPayload",
    "CronDefinition",
    "CronSchedule",
    "DeadRetried",
    "EnqueuedGroup",
    "EnqueuedJob",
    "Executor",
    "GiveUp",
    "GroupStatus",
    "InvalidJobArguments",
    "JobArgs",
    "JobClient",
    "JobContext",
    "JobDefinition",
    "JobRecord",
    "JobRef",
    "JobStatus",
    "JobTimedOut",
    "LogFormat",
    "MigrationSeries",
    "MillraceError",
    "NoArgs",
    "NotFound",
    "Outcome",
    "Pool",
    "Progress",
    "PruneJobRecordsArgs",
    "Queue",
    "QueueFull",
    "RateLimit",
    "RetryAfter",
    "RetryPolicy",
    "ServicesFactory",
    "WorkerConfig",
    "apply_migrations",
    "cli",
    "collect",
    "collect_refs",
    "configure_logging",
    "connect",
    "create_pool",
    "cron",
    "exponential",
    "fixed",
    "job",
    "maintenance",
    "status",
    "unstorable_text",
    "worker_settings",
]
