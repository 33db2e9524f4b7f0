"""Running one attempt: typed context in, retry policy on every error, one record and one log line out.

arq retries only on its own `Retry` exception and treats everything else, timeouts included, as a
final failure. Here every exception goes through the job's RetryPolicy instead: retry (raise arq's
Retry with the policy's delay) or dead (return normally, so arq forgets the job and the record keeps it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import arq.worker
import structlog

from millrace import admission, payload, store, tracing
from millrace.admission import CLAIM_POSTPONE_S, RATE_LIMIT_MAX_WAIT_S, ReservedSlot
from millrace.clock import CLOCK
from millrace.context import JobContext
from millrace.declare import CronDefinition, JobDefinition
from millrace.errors import (
    AttemptsExhausted,
    CorruptPayload,
    InvalidJobArguments,
    JobTimedOut,
    LeaseLost,
    RetryAfter,
)
from millrace.fingerprints import fingerprint
from millrace.outages import OUTAGES
from millrace.pause import hold_if_paused
from millrace.records import (
    FINAL_STATUSES,
    AttemptFinished,
    AttemptReleased,
    Claimed,
    ClaimRequest,
    JobStatus,
    Outcome,
    Refused,
)
from millrace.retry import Die, RetryPolicy
from millrace.runtime import RunningAttempt, WorkerRuntime, runtime_of
from millrace.store.pool import TRANSIENT_ERRORS

log = structlog.get_logger("millrace.job")

#: errors no policy can help: the same payload fails the same way every time
_NEVER_RETRY = (InvalidJobArguments, CorruptPayload, AttemptsExhausted, LeaseLost)
#: how long a job waits for PostgreSQL to take its claim before it goes back to Redis, and for how long
CLAIM_PATIENCE_S = 3.0
#: arq's own timeout is only a backstop: ours fires first so that a timeout goes through the policy, and
#: arq's leaves room for a rate limit's wait, the claim's patience and a record written at the second try
ARQ_TIMEOUT_GRACE_S = RATE_LIMIT_MAX_WAIT_S + CLAIM_PATIENCE_S + 5.0
#: recording a corrupt payload is one database write
CORRUPT_TIMEOUT_S = 5.0
#: how long a cancelled attempt waits for its hand-back to be written; after that the reaper settles it
RELEASE_WAIT_S = 3.0
#: arq refuses to run a job tried this often; the policy decides long before, this only bounds arq
ARQ_MAX_TRIES = payload.MAX_JOB_TRY
#: a cron tick starts no sooner than this before its time by PostgreSQL's clock (the scheduler reads
#: Redis's clock, millrace.clock; the two may differ by a little)
CRON_EARLY_TOLERANCE_S = 0.2

JobBody = Callable[[JobContext[Any]], Awaitable[None]]
#: what the application does when its job is dead for good: given the context and the reason
DeadHook = Callable[[JobContext[Any], str], Awaitable[None]]
#: how long a dead hook may take; it runs before the job's end is recorded, so it runs again if cut off
DEAD_HOOK_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How to run a job's attempts: the body, its policy and timeout, and what to do once it is dead."""

    body: JobBody
    policy: RetryPolicy
    timeout_s: float
    on_dead: DeadHook | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Intent:
    """An attempt about to be claimed: what the record needs, whoever ends up creating it."""

    record_id: str
    function: str
    queue: str
    enqueued_at: datetime
    tick_at: datetime | None
    args: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """A claimed attempt."""

    intent: Intent
    attempt: int
    run_attempt: int
    lease: int


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
            with tracing.consuming(job_ctx, parsed.trace_context):
                await definition.run(job_ctx, definition.ref.validate(parsed.args))

        on_dead = definition.on_dead

        async def dead(job_ctx: JobContext[Any], reason: str) -> None:
            if on_dead is not None:
                await on_dead(job_ctx, definition.ref.validate(parsed.args), reason)

        plan = Plan(body=body, policy=definition.retry, timeout_s=definition.timeout_s, on_dead=dead)
        intent = Intent(
            record_id=parsed.record_id,
            function=definition.name,
            queue=arq_job.runtime.queue.name,
            enqueued_at=arq_job.enqueued_at,
            tick_at=None,
            args=parsed.args,
        )
        runtime, limit = arq_job.runtime, definition.rate_limit
        hold_if_paused(runtime.pause)
        job_caps = tuple(cap.for_args(parsed.args) for cap in definition.caps)
        async with admission.places(runtime.jobs.redis, job_caps, parsed.record_id, runtime.worker_name):
            slot = None if limit is None else await admission.reserve_slot(runtime.jobs.redis, limit, parsed.args)
            await run_attempt(arq_job.runtime, intent, plan, slot=slot)

    handle.__qualname__ = definition.name
    return handle


def cron_handler(definition: CronDefinition[Any]) -> Callable[..., Awaitable[None]]:
    """The coroutine arq's scheduler enqueues; it runs the body only if PostgreSQL grants it the tick."""

    async def handle(ctx: dict[str, Any]) -> None:
        arq_job = arq_job_of(ctx)
        runtime = arq_job.runtime
        hold_if_paused(runtime.pause)
        try:
            tick_at = tick_of(arq_job.job_id)
        except (ValueError, OverflowError, OSError):  # an id arq's scheduler never writes: planted by hand
            reason = "cron job id is not cron:<name>:<tick in unix ms>"
            await record_corrupt(arq_job, CorruptPayload(reason, arq_job.job_id.encode("utf-8", "backslashreplace")))
            return
        async with runtime.pool.acquire() as conn:
            early_s = await store.cron.seconds_until(conn, tick_at)
            if early_s > CRON_EARLY_TOLERANCE_S:
                # a scheduler whose clock runs ahead of PostgreSQL's: the tick waits for its time
                log.warning("cron_tick_early", cron=definition.name, tick_at=tick_at.isoformat(), early_s=early_s)
                raise arq.worker.Retry(defer=early_s)
            owned = await store.cron.claim_tick(conn, definition.name, tick_at, arq_job.job_id)
        if not owned:
            log.info("cron_tick_skipped", cron=definition.name, tick_at=tick_at.isoformat())
            return
        intent = Intent(
            record_id=arq_job.job_id,
            function=definition.name,
            queue=runtime.queue.name,
            enqueued_at=arq_job.enqueued_at,
            tick_at=tick_at,
            args={"tick_at": tick_at.isoformat()},
        )

        async def body(job_ctx: JobContext[Any]) -> None:
            with tracing.consuming(job_ctx, None):  # a cron run starts a trace of its own
                await definition.run(job_ctx)

        await run_attempt(runtime, intent, Plan(body=body, policy=definition.retry, timeout_s=definition.timeout_s))

    handle.__qualname__ = definition.name
    return handle


def tick_of(arq_job_id: str) -> datetime:
    """The tick a cron run belongs to: arq names cron jobs `cron:<name>:<tick in unix ms>`."""
    tick_ms = int(arq_job_id.rsplit(":", 1)[-1])
    return datetime.fromtimestamp(tick_ms / 1000, tz=UTC)


async def run_attempt(
    runtime: WorkerRuntime[Any], intent: Intent, plan: Plan, *, slot: ReservedSlot | None = None
) -> None:
    """Claim, run, record. Returning lets arq forget the job; raising arq's Retry leaves it in Redis.

    With a rate limit's `slot`, the body starts no sooner: the claim's own time is spent in the wait, so
    the calls the body makes keep the slots' spacing.
    """
    runtime.in_hand.count += 1
    try:
        with structlog.contextvars.bound_contextvars(job=intent.function, job_id=intent.record_id, queue=intent.queue):
            claim = await _claim(runtime, intent, urgent=slot is not None)
            if isinstance(claim, Refused):
                _refused(runtime, claim)  # raises Retry unless the job is finished for good
                return
            attempt = Attempt(
                intent=intent, attempt=claim.attempt, run_attempt=claim.counted_attempts, lease=claim.lease
            )
            with structlog.contextvars.bound_contextvars(attempt=attempt.attempt):
                retry_in_s = await _run_claimed(runtime, attempt, plan, slot)
    finally:
        runtime.in_hand.count -= 1
    if retry_in_s is not None:
        raise arq.worker.Retry(defer=retry_in_s)


async def _claim(runtime: WorkerRuntime[Any], intent: Intent, *, urgent: bool) -> Claimed | Refused:
    """The attempt's claim; while PostgreSQL is away, the job goes back to Redis for a while. `urgent`: a
    rate limit's slot is due, and a late start would give it up."""
    if intent.record_id in runtime.running_ids:  # a second copy of a job this worker runs now
        return Refused(status="in_progress")
    request = ClaimRequest(
        job_id=intent.record_id,
        queue=intent.queue,
        function=intent.function,
        args=intent.args,
        enqueued_at=intent.enqueued_at,
        worker=runtime.worker_name,
    )
    delay_s = 0.1
    deadline = time.monotonic() + CLAIM_PATIENCE_S
    while True:
        try:
            return await runtime.records.claim(request, urgent=urgent)
        except TRANSIENT_ERRORS as error:
            if time.monotonic() + delay_s > deadline:
                log.warning("job_claim_postponed", error=repr(error), retry_in_s=CLAIM_POSTPONE_S)
                raise arq.worker.Retry(defer=CLAIM_POSTPONE_S) from error
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)


def _refused(runtime: WorkerRuntime[Any], refused: Refused) -> None:
    if refused.status in FINAL_STATUSES:
        # a copy of a job that has finished (Redis kept or got it back): never run it twice
        log.info("job_copy_dropped", status=refused.status, reason="finished already")
        return
    # another live worker holds it: this copy waits in Redis and looks again, in case that worker dies
    log.info("job_copy_postponed", status=refused.status, reason="held by another worker")
    raise arq.worker.Retry(defer=runtime.recheck_held_s)


async def _run_claimed(
    runtime: WorkerRuntime[Any], attempt: Attempt, plan: Plan, slot: ReservedSlot | None
) -> float | None:
    """Run a claimed attempt and record its end; returns the delay before the next attempt, if any.

    The job counts as running here until its end is on record: until then, this worker's heartbeat
    must not take it for a claim whose answer was lost.
    """
    task = asyncio.current_task()
    assert task is not None
    intent = attempt.intent
    runtime.running[task] = RunningAttempt(
        job_id=intent.record_id, function=intent.function, attempt=attempt.attempt, lease=attempt.lease
    )
    runtime.running_ids.add(intent.record_id)
    try:
        return await _run_and_record(runtime, attempt, plan, slot)
    finally:
        del runtime.running[task]
        runtime.running_ids.discard(intent.record_id)


async def _run_and_record(
    runtime: WorkerRuntime[Any], attempt: Attempt, plan: Plan, slot: ReservedSlot | None
) -> float | None:
    started = time.perf_counter()
    job_id = attempt.intent.record_id
    runtime.abortable[job_id] = _current_task()
    try:
        if slot is not None:  # inside: a SIGTERM during the wait hands the job back like one during the body
            slot_passed_retry_in_s = await admission.keep_slot(runtime.jobs.redis, slot)
            if slot_passed_retry_in_s is not None:
                passed = f"its slot under the rate limit {slot.limit.name!r} passed while it was claimed"
                await _release(runtime, attempt, started, reason=("RateLimited", passed))
                raise arq.worker.Retry(defer=slot_passed_retry_in_s)
            started = time.perf_counter()
        error = await _run_body(runtime, attempt, plan)
    except asyncio.CancelledError:
        if job_id in runtime.aborting:  # a person's abort, not a shutdown: the job ends here
            _current_task().uncancel()
            await _record_abort(runtime, attempt, started)
            return None
        # The worker is shutting down: hand the job back, not counted, before arq frees it in Redis for
        # the next worker (whose claim would otherwise find it still held). Bounded: PostgreSQL may be away.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(_release(runtime, attempt, started)), RELEASE_WAIT_S)
        raise
    finally:
        del runtime.abortable[job_id]
        runtime.aborting.discard(job_id)
    duration_ms = (time.perf_counter() - started) * 1000
    if isinstance(error, RetryAfter) and slot is not None:
        await admission.hold_off(runtime.jobs.redis, slot, error.delay_s)
    outcome, status, retry_in_s = conclude(error, plan.policy, attempt.run_attempt)
    if status == "dead" and plan.on_dead is not None and not isinstance(error, LeaseLost):
        await _run_dead_hook(runtime, attempt, plan, error)
    held = await runtime.records.finish(_finished_event(attempt, outcome, status, duration_ms, error, retry_in_s))
    if not held:
        # fenced off: the job went to another worker while this one was cut off; its copy in Redis is theirs
        log.warning("job_attempt_fenced", outcome=outcome, duration_ms=round(duration_ms, 2))
        raise arq.worker.Retry(defer=None)
    _log_finished(outcome, duration_ms, error, retry_in_s)
    return retry_in_s


def abort_running(abortable: dict[str, asyncio.Task[Any]], aborting: set[str], job_ids: Collection[str]) -> None:
    """Cancel the attempts whose abort a person asked for (the heartbeat hears it); each ends `aborted`."""
    for job_id in job_ids:
        task = abortable.get(job_id)
        if task is not None and job_id not in aborting:
            aborting.add(job_id)
            log.warning("job_aborting", job_id=job_id)
            task.cancel()


def cut_for_shutdown(abortable: dict[str, asyncio.Task[Any]], aborting: set[str]) -> int:
    """Cancel the attempts still running when the deploy's grace is over: each hands its job back."""
    cut = [task for job_id, task in abortable.items() if job_id not in aborting and not task.done()]
    for task in cut:
        task.cancel()
    return len(cut)


async def _record_abort(runtime: WorkerRuntime[Any], attempt: Attempt, started: float) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    aborted = dataclasses.replace(
        _finished_event(attempt, "aborted", "cancelled", duration_ms, None, None),
        error_type="Aborted",
        error_message="aborted on a person's request while it ran",
    )
    held = await runtime.records.finish(aborted)
    log.warning("job_aborted", duration_ms=round(duration_ms, 2), recorded=held)


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None
    return task


async def _release(
    runtime: WorkerRuntime[Any], attempt: Attempt, started: float, *, reason: tuple[str, str] | None = None
) -> None:
    """Hand the job back uncounted; `reason` (error type, message) is a worker shutting down unless given."""
    release = AttemptReleased(
        job_id=attempt.intent.record_id,
        attempt=attempt.attempt,
        lease=attempt.lease,
        finished_at=datetime.now(UTC),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    if reason is not None:
        release = dataclasses.replace(release, error_type=reason[0], error_message=reason[1])
    released = await runtime.records.release(release)
    log.warning("job_handed_back", reason=release.error_type, released=released)


async def _run_dead_hook(runtime: WorkerRuntime[Any], attempt: Attempt, plan: Plan, error: Exception | None) -> None:
    """The application's word on a dead job (mark its quotation failed, say), before the end is recorded:
    a worker that dies in between leaves the job to run again, and the hook with it. Its own failure is
    logged, never the job's: the job is dead either way."""
    assert plan.on_dead is not None
    reason = f"{type(error).__name__}: {error}" if error is not None else "dead"
    try:
        async with asyncio.timeout(DEAD_HOOK_TIMEOUT_S):
            while True:
                try:
                    await plan.on_dead(_context(runtime, attempt, plan.policy), reason)
                    return
                except OUTAGES as outage:  # PostgreSQL away for a moment: the hook's write is tried again
                    log.warning("job_dead_hook_postponed", error=type(outage).__name__)
                    await asyncio.sleep(1.0)
    except InvalidJobArguments:
        pass  # arguments that never were valid name no business record to mark
    except Exception:
        log.exception("job_dead_hook_failed")


def _context(runtime: WorkerRuntime[Any], attempt: Attempt, policy: RetryPolicy) -> JobContext[Any]:
    intent = attempt.intent
    return JobContext(
        job_id=intent.record_id,
        function=intent.function,
        queue=intent.queue,
        attempt=attempt.attempt,
        run_attempt=attempt.run_attempt,
        max_attempts=policy.attempts,
        enqueued_at=intent.enqueued_at,
        tick_at=intent.tick_at,
        worker=runtime.worker_name,
        lease=attempt.lease,
        jobs=runtime.jobs,
        services=runtime.services,
        progress_writer=runtime.progress,
    )


async def _run_body(runtime: WorkerRuntime[Any], attempt: Attempt, plan: Plan) -> Exception | None:
    if attempt.run_attempt > plan.policy.attempts:
        return AttemptsExhausted(plan.policy.attempts)
    deadline = asyncio.timeout(plan.timeout_s)
    try:
        async with deadline:
            await plan.body(_context(runtime, attempt, plan.policy))
    except TimeoutError as error:
        return JobTimedOut(plan.timeout_s) if deadline.expired() else error
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


def _finished_event(
    attempt: Attempt,
    outcome: Outcome,
    status: JobStatus,
    duration_ms: float,
    error: BaseException | None,
    retry_in_s: float | None,
) -> AttemptFinished:
    now = CLOCK.now()
    return AttemptFinished(
        job_id=attempt.intent.record_id,
        attempt=attempt.attempt,
        lease=attempt.lease,
        outcome=outcome,
        status=status,
        finished_at=now,
        duration_ms=duration_ms,
        error_type=None if error is None else type(error).__name__,
        error_message=None if error is None else str(error) or repr(error),
        traceback=None if error is None else "".join(traceback.format_exception(error)),
        retry_at=None if retry_in_s is None else now + timedelta(seconds=retry_in_s),
        fingerprint=None if error is None else fingerprint(attempt.intent.function, error),
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
    intent = Intent(
        record_id=payload.record_id_of(arq_job.job_id),
        function="<unreadable>",
        queue=arq_job.runtime.queue.name,
        enqueued_at=arq_job.enqueued_at,
        tick_at=None,
        args={},
    )

    async def body(_ctx: JobContext[Any]) -> None:
        raise error

    await run_attempt(
        arq_job.runtime, intent, Plan(body=body, policy=RetryPolicy(attempts=1), timeout_s=CORRUPT_TIMEOUT_S)
    )


async def handle_corrupt(ctx: dict[str, Any], reason: str, preview: str) -> None:
    """arq's entry for payloads the deserializer could not read (see payload.worker_loads)."""
    await record_corrupt(arq_job_of(ctx), CorruptPayload(reason, preview.encode()))
