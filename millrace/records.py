"""The runtime's records as Python sees them: job statuses, new jobs, job and attempt records, events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

JobStatus = Literal["queued", "deferred", "in_progress", "retrying", "succeeded", "dead", "cancelled"]
Outcome = Literal["succeeded", "retrying", "dead", "lost", "interrupted", "aborted"]
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
    #: the fan-out group it is a child of (JobClient.enqueue_group)
    group_id: str | None = None
    #: the W3C trace context it was enqueued under (millrace.tracing); None when nothing traced it
    trace_context: dict[str, str] | None = None
    #: seconds of head start over the queue's normal jobs (millrace.dispatch.build)
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRecord:
    id: str
    queue: str
    function: str
    args: dict[str, Any]
    job_key: str | None
    status: JobStatus
    attempts: int
    #: attempts spent from the current budget: lost and failed ones count, those a deploy interrupted do not
    counted_attempts: int
    attempt_base: int
    run_at: datetime | None
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None
    last_error_type: str | None
    last_error: str | None
    #: how far the job came, as its body last reported it; None if it never did
    progress: Progress | None = None
    #: the error group of its last failure (millrace.fingerprints)
    last_fingerprint: str | None = None
    #: the id of the trace it was enqueued in (32 hex digits), to look it up in the tracing backend
    trace_id: str | None = None
    #: when a person asked to abort it while it ran (JobClient.abort)
    abort_requested_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    done: int
    total: int | None
    message: str | None
    at: datetime


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
class ClaimRequest:
    """A worker asking to run a job; what a record the worker creates itself (a cron run) needs comes along."""

    job_id: str
    queue: str
    function: str
    args: dict[str, Any]
    enqueued_at: datetime
    worker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    """A granted claim: the attempt's number over the job's life, within its budget, and its lease."""

    attempt: int
    counted_attempts: int
    lease: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A refused claim: the job's status now (None if it has no record), which says why."""

    status: JobStatus | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptReleased:
    """An attempt handed back before its body ran to its end (its worker shutting down, a rate limit's slot
    missed): the job goes back to its queue, the attempt is not counted."""

    job_id: str
    attempt: int
    lease: int
    finished_at: datetime
    duration_ms: float
    error_type: str = "WorkerShutdown"
    error_message: str = "the worker stopped before the attempt ended; the job went back to its queue"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptFinished:
    job_id: str
    attempt: int
    lease: int
    outcome: Outcome
    status: JobStatus
    finished_at: datetime
    duration_ms: float
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    retry_at: datetime | None = None
    #: the failure's error group (millrace.fingerprints)
    fingerprint: str | None = None


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
    trace_context: dict[str, str] | None = None
    priority: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupStatus:
    """Where a fan-out group stands: its children by final state, and their progress summed."""

    total: int
    succeeded: int
    dead: int
    cancelled: int
    #: the sum of the children's last reported `done`
    progress_done: int
    #: one dead child's last error, to say why
    an_error: str | None
    #: the follow-up, once the last child has ended
    then_job_id: str | None

    @property
    def ended(self) -> int:
        return self.succeeded + self.dead + self.cancelled
