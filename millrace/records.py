"""The runtime's records as Python sees them: job statuses, new jobs, job and attempt records, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

JobStatus = Literal["queued", "deferred", "in_progress", "retrying", "succeeded", "dead", "cancelled"]
Outcome = Literal["succeeded", "retrying", "dead", "lost"]
#: a pending job has not started, or waits for its next attempt: it may be cancelled, and its job key is taken
PENDING_STATUSES: tuple[JobStatus, ...] = ("queued", "deferred", "retrying")
#: finished for good: nothing will run it again unless a person retries it
FINAL_STATUSES: tuple[JobStatus, ...] = ("succeeded", "dead", "cancelled")
ALL_STATUSES: tuple[JobStatus, ...] = (
    "queued",
    "deferred",
    "in_progress",
    "retrying",
    "succeeded",
    "dead",
    "cancelled",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    id: str
    queue: str
    function: str
    args: dict[str, Any]
    job_key: str | None
    run_at: datetime | None
    enqueued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    id: str
    queue: str
    function: str
    args: dict[str, Any]
    job_key: str | None
    status: JobStatus
    attempts: int
    attempt_base: int
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    last_error_type: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    job_id: str
    attempt: int
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    outcome: Outcome | None
    error_type: str | None
    error_message: str | None
    traceback: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptStarted:
    job_id: str
    attempt: int
    worker: str
    started_at: datetime
    #: attempts before this budget began (dead-letter retries); earlier ones of this budget may be lost
    attempt_base: int
    # what a record created by the worker itself (cron runs) needs; ignored when the record exists
    queue: str
    function: str
    args: dict[str, Any]
    enqueued_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFinished:
    job_id: str
    attempt: int
    outcome: Outcome
    status: JobStatus
    finished_at: datetime
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStatus:
    queue: str
    counts: dict[str, int]
    oldest_waiting_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxEntry:
    """A job waiting for the relay to hand it to Redis."""

    job_id: str
    queue: str
    function: str
    args: dict[str, Any]
    attempt_base: int
    run_at: datetime | None
    enqueued_at: datetime
