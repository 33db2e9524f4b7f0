"""Running one attempt: typed context in, retry policy on every error, one record and one log line out.

arq retries only on its own `Retry` exception and treats everything else, timeouts included, as a
final failure. Here every exception goes through the job's RetryPolicy instead: retry (raise arq's
Retry with the policy's delay) or dead (return normally, so arq forgets the job and the record keeps it).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import arq.worker
import structlog

from millrace import payload, store
from millrace.context import JobContext
from millrace.declare import CronDefinition, JobDefinition
from millrace.errors import AttemptsExhausted, CorruptPayload, InvalidJobArguments, JobTimedOut
from millrace.records import AttemptFinished, AttemptStarted, JobStatus, Outcome
from millrace.retry import Die, RetryPolicy
from millrace.runtime import WorkerRuntime, runtime_of

log = structlog.get_logger("millrace.job")

#: errors no policy can help: the same payload fails the same way every time
_NEVER_RETRY = (InvalidJobArguments, CorruptPayload, AttemptsExhausted)
#: arq's own timeout is only a backstop; ours fires first so that a timeout goes through the policy
ARQ_TIMEOUT_GRACE_S = 2.0
#: recording a corrupt payload is one database write
CORRUPT_TIMEOUT_S = 5.0
#: arq refuses to run a job tried this often; the policy decides long before, this only bounds arq
ARQ_MAX_TRIES = payload.MAX_JOB_TRY

JobBody = Callable[[JobContext[Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    record_id: str
    function: str
    queue: str
    attempt: int
    run_attempt: int
    enqueued_at: datetime
    tick_at: datetime | None
    args: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ArqJob:
    """What arq tells an attempt through its untyped context dict, read once."""

    runtime: WorkerRuntime[Any]
    job_id: str
    job_try: int
    enqueued_at: datetime


def arq_job_of(ctx: dict[str, Any]) -> ArqJob:
    return ArqJob(
        runtime=runtime_of(ctx), job_id=str(ctx["job_id"]), job_try=int(ctx["job_try"]), enqueued_at=ctx["enqueue_time"]
    )


def job_handler(definition: JobDefinition[Any, Any]) -> Callable[..., Awaitable[None]]:
    """The coroutine arq calls for this job: `(ctx, envelope)`."""

    async def handle(ctx: dict[str, Any], envelope: Any = None) -> None:
        arq_job = arq_job_of(ctx)
        try:
            parsed = payload.read_envelope(envelope)
        except CorruptPayload as error:
            await record_corrupt(arq_job, error)
            return

        async def body(job_ctx: JobContext[Any]) -> None:
            await definition.run(job_ctx, definition.ref.validate(parsed.args))

        attempt = Attempt(
            record_id=parsed.record_id,
            function=definition.name,
            queue=arq_job.runtime.queue.name,
            attempt=parsed.attempt_base + arq_job.job_try,
            run_attempt=arq_job.job_try,
            enqueued_at=arq_job.enqueued_at,
            tick_at=None,
            args=parsed.args,
        )
        await run_attempt(arq_job.runtime, attempt, body, definition.retry, definition.timeout_s)

    handle.__qualname__ = definition.name
    return handle


def cron_handler(definition: CronDefinition[Any]) -> Callable[..., Awaitable[None]]:
    """The coroutine arq's scheduler enqueues; it runs the body only if PostgreSQL grants it the tick."""

    async def handle(ctx: dict[str, Any]) -> None:
        arq_job = arq_job_of(ctx)
        runtime = arq_job.runtime
        try:
            tick_at = tick_of(arq_job.job_id)
        except (ValueError, OverflowError, OSError):  # an id arq's scheduler never writes: planted by hand
            reason = "cron job id is not cron:<name>:<tick in unix ms>"
            await record_corrupt(arq_job, CorruptPayload(reason, arq_job.job_id.encode("utf-8", "backslashreplace")))
            return
        async with runtime.pool.acquire() as conn:
            owned = await store.cron.claim_tick(conn, definition.name, tick_at, arq_job.job_id)
        if not owned:
            log.info("cron_tick_skipped", cron=definition.name, tick_at=tick_at.isoformat())
            return
        attempt = Attempt(
            record_id=arq_job.job_id,
            function=definition.name,
            queue=runtime.queue.name,
            attempt=arq_job.job_try,
            run_attempt=arq_job.job_try,
            enqueued_at=arq_job.enqueued_at,
            tick_at=tick_at,
            args={"tick_at": tick_at.isoformat()},
        )
        await run_attempt(runtime, attempt, definition.run, definition.retry, definition.timeout_s)

    handle.__qualname__ = definition.name
    return handle


def tick_of(arq_job_id: str) -> datetime:
    """The tick a cron run belongs to: arq names cron jobs `cron:<name>:<tick in unix ms>`."""
    tick_ms = int(arq_job_id.rsplit(":", 1)[-1])
    return datetime.fromtimestamp(tick_ms / 1000, tz=UTC)


async def run_attempt(
    runtime: WorkerRuntime[Any], attempt: Attempt, body: JobBody, policy: RetryPolicy, timeout_s: float
) -> None:
    with structlog.contextvars.bound_contextvars(
        job=attempt.function, job_id=attempt.record_id, queue=attempt.queue, attempt=attempt.attempt
    ):
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        runtime.records.record_soon(_started_event(runtime, attempt, started_at))
        error = await _run_body(runtime, attempt, body, policy, timeout_s)
        duration_ms = (time.perf_counter() - started) * 1000
        outcome, status, retry_in_s = conclude(error, policy, attempt.run_attempt)
        await runtime.records.record(_finished_event(attempt, outcome, status, duration_ms, error, retry_in_s))
        _log_finished(outcome, duration_ms, error, retry_in_s)
    if retry_in_s is not None:
        raise arq.worker.Retry(defer=retry_in_s)


async def _run_body(
    runtime: WorkerRuntime[Any], attempt: Attempt, body: JobBody, policy: RetryPolicy, timeout_s: float
) -> Exception | None:
    if attempt.run_attempt > policy.attempts:
        return AttemptsExhausted(policy.attempts)
    job_ctx = JobContext(
        job_id=attempt.record_id,
        function=attempt.function,
        queue=attempt.queue,
        attempt=attempt.attempt,
        run_attempt=attempt.run_attempt,
        max_attempts=policy.attempts,
        enqueued_at=attempt.enqueued_at,
        tick_at=attempt.tick_at,
        worker=runtime.worker_name,
        jobs=runtime.jobs,
        services=runtime.services,
    )
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            await body(job_ctx)
    except TimeoutError as error:
        return JobTimedOut(timeout_s) if deadline.expired() else error
    except Exception as error:  # every error is the policy's to judge; CancelledError passes through
        return error
    return None


def conclude(error: Exception | None, policy: RetryPolicy, run_attempt: int) -> tuple[Outcome, JobStatus, float | None]:
    """Outcome of the attempt, the job's next status, and the delay before the next attempt if any."""
    if error is None:
        return "succeeded", "succeeded", None
    decision = Die(reason="not_retryable") if isinstance(error, _NEVER_RETRY) else policy.decide(error, run_attempt)
    if isinstance(decision, Die):
        return "dead", "dead", None
    return "retrying", "retrying", decision.delay_s


def _started_event(runtime: WorkerRuntime[Any], attempt: Attempt, started_at: datetime) -> AttemptStarted:
    return AttemptStarted(
        job_id=attempt.record_id,
        attempt=attempt.attempt,
        attempt_base=attempt.attempt - attempt.run_attempt,
        worker=runtime.worker_name,
        started_at=started_at,
        queue=attempt.queue,
        function=attempt.function,
        args=attempt.args,
        enqueued_at=attempt.enqueued_at,
    )


def _finished_event(
    attempt: Attempt,
    outcome: Outcome,
    status: JobStatus,
    duration_ms: float,
    error: BaseException | None,
    retry_in_s: float | None,
) -> AttemptFinished:
    now = datetime.now(UTC)
    return AttemptFinished(
        job_id=attempt.record_id,
        attempt=attempt.attempt,
        outcome=outcome,
        status=status,
        finished_at=now,
        duration_ms=duration_ms,
        error_type=None if error is None else type(error).__name__,
        error_message=None if error is None else str(error) or repr(error),
        traceback=None if error is None else "".join(traceback.format_exception(error)),
        retry_at=None if retry_in_s is None else now + timedelta(seconds=retry_in_s),
    )


def _log_finished(outcome: Outcome, duration_ms: float, error: BaseException | None, retry_in_s: float | None) -> None:
    fields: dict[str, Any] = {"outcome": outcome, "duration_ms": round(duration_ms, 2)}
    if error is not None:
        fields["error"] = f"{type(error).__name__}: {error}"
    if retry_in_s is not None:
        fields["retry_in_s"] = round(retry_in_s, 3)
    level = {"succeeded": log.info, "retrying": log.warning}.get(outcome, log.error)
    level("job_finished", **fields)


async def record_corrupt(arq_job: ArqJob, error: CorruptPayload) -> None:
    """A payload no job can read: record one dead attempt with the reason, and let arq drop it."""
    attempt = Attempt(
        record_id=payload.record_id_of(arq_job.job_id),
        function="<unreadable>",
        queue=arq_job.runtime.queue.name,
        attempt=arq_job.job_try,
        run_attempt=arq_job.job_try,
        enqueued_at=arq_job.enqueued_at,
        tick_at=None,
        args={},
    )

    async def body(_ctx: JobContext[Any]) -> None:
        raise error

    await run_attempt(arq_job.runtime, attempt, body, RetryPolicy(attempts=1), timeout_s=CORRUPT_TIMEOUT_S)


async def handle_corrupt(ctx: dict[str, Any], reason: str, preview: str) -> None:
    """arq's entry for payloads the deserializer could not read (see payload.worker_loads)."""
    await record_corrupt(arq_job_of(ctx), CorruptPayload(reason, preview.encode()))
