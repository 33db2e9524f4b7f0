"""What a person does to the queues, from the dashboard or the command line: each action does the same
thing from both, and each goes to the audit log with who, when, what and how many.

Bulk actions work in keyset pages of BULK_PAGE jobs, each page its own transaction: a large retry takes
no long lock, reports its progress page by page, and what it did before an interruption stays done.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from millrace import store
from millrace.client import JobClient
from millrace.declare import JobRef
from millrace.errors import InvalidJobArguments
from millrace.store.insights import JobFilter
from millrace.text import unstorable_text

#: jobs per page (and per transaction) of a bulk action
BULK_PAGE = 500
#: what a bulk action touches at most in one go; past it, the person narrows the filter or repeats
BULK_LIMIT = 1_000_000
#: edited arguments larger than this are refused: a job's arguments are ids, not documents
MAX_EDITED_ARGS_BYTES = 64 * 1024

Progress = Callable[[int, int], Awaitable[None] | None]


class ActionRefused(Exception):
    """An action that cannot be done as asked; the message says why, for the person who asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkResult:
    matched: int
    done: int
    audit_id: int


async def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is None:
        return
    maybe = progress(done, total)
    if maybe is not None:
        await maybe


async def retry_dead(
    jobs: JobClient,
    where: JobFilter,
    *,
    actor: str,
    progress: Progress | None = None,
    action: str = "retry_dead",
    started: Callable[[int], None] | None = None,
) -> BulkResult:
    """Retry every dead job `where` matches, with a fresh budget of attempts each; `started` hears the
    audit entry's id as soon as there is one."""
    where = JobFilter(**{**_fields(where), "status": "dead"})
    async with jobs.pool.acquire() as conn:
        total = await store.insights.count_jobs(conn, where, at_most=BULK_LIMIT)
        audit_id = await store.insights.add_audit(
            conn, actor=actor, action=action, target=_describe(where), details={"matched": total}
        )
    if started is not None:
        started(audit_id)
    done, after = 0, ""
    await _report(progress, 0, total)
    while done < total:
        async with jobs.pool.acquire() as conn:
            page = await store.insights.ids_of_jobs(conn, where, after_id=after, limit=BULK_PAGE)
        if not page:
            break
        after = page[-1]
        retried = await jobs.retry_dead(page)
        done += len(retried.requeued)
        await _report(progress, done, total)
    async with jobs.pool.acquire() as conn:
        await store.insights.set_audit_affected(conn, audit_id, done, {"finished": True})
    return BulkResult(matched=total, done=done, audit_id=audit_id)


async def retry_one(
    jobs: JobClient,
    job_id: str,
    *,
    actor: str,
    edited_args: str | None = None,
    refs: Mapping[str, JobRef[Any]] | None = None,
) -> str:
    """Retry one dead job, with its arguments edited if `edited_args` (JSON) is given: the old ones stay in
    the job's history. Edited arguments are checked against the job's declaration when it is known."""
    async with jobs.pool.acquire() as conn, conn.transaction():
        job = await store.jobs.find_job(conn, job_id)
        if job is None:
            raise ActionRefused("no such job")
        if job.status != "dead":
            raise ActionRefused(f"only a dead job can be retried; this one is {job.status}")
        details: dict[str, Any] = {}
        if edited_args is not None and edited_args.strip():
            new_args = _checked_args(edited_args, refs.get(job.function) if refs else None)
            if new_args != job.args:
                await conn.execute(
                    """UPDATE millrace_jobs SET args_history = args_history || jsonb_build_array(
                           jsonb_build_object('args', args, 'replaced_at', now(), 'replaced_by', $3::text)),
                       args = $2 WHERE id = $1 AND status = 'dead'""",
                    job_id,
                    new_args,
                    actor,
                )
                details = {"edited_args": True}
        await store.insights.add_audit(
            conn, actor=actor, action="retry_job", target=job_id, affected=1, details=details
        )
    retried = await jobs.retry_dead([job_id])
    return "retried" if retried.requeued else "not_dead"


def _checked_args(raw: str, ref: JobRef[Any] | None) -> dict[str, Any]:
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_EDITED_ARGS_BYTES:
        raise ActionRefused(f"the arguments are larger than {MAX_EDITED_ARGS_BYTES // 1024} KiB")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ActionRefused(f"the arguments are not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ActionRefused("the arguments must be a JSON object")
    unstorable = unstorable_text(value)
    if unstorable is not None:
        raise ActionRefused(f"the arguments cannot be stored: {unstorable}")
    if ref is not None:
        try:
            return ref.dump(ref.validate(value))
        except InvalidJobArguments as error:
            raise ActionRefused("; ".join(error.errors)) from None
    return value


async def cancel(jobs: JobClient, job_id: str, *, actor: str) -> Literal["cancelled", "running", "not_pending"]:
    outcome = await jobs.cancel(job_id)
    async with jobs.pool.acquire() as conn:
        await store.insights.add_audit(
            conn,
            actor=actor,
            action="cancel_job",
            target=job_id,
            affected=int(outcome == "cancelled"),
            details={"outcome": outcome},
        )
    return outcome


async def abort(jobs: JobClient, job_id: str, *, actor: str) -> Literal["aborting", "cancelled", "not_pending"]:
    """Abort a running job (a pending one is cancelled instead); its worker hears at its next heartbeat."""
    outcome = await jobs.abort(job_id)
    async with jobs.pool.acquire() as conn:
        await store.insights.add_audit(
            conn,
            actor=actor,
            action="abort_job",
            target=job_id,
            affected=int(outcome != "not_pending"),
            details={"outcome": outcome},
        )
    return outcome


async def pause_queue(jobs: JobClient, queue: str, *, actor: str) -> bool:
    async with jobs.pool.acquire() as conn, conn.transaction():
        paused = await store.queues.pause(conn, queue, by=actor)
        await store.insights.add_audit(conn, actor=actor, action="pause_queue", target=queue, affected=int(paused))
    return paused


async def resume_queue(jobs: JobClient, queue: str, *, actor: str) -> bool:
    async with jobs.pool.acquire() as conn, conn.transaction():
        resumed = await store.queues.resume(conn, queue)
        await store.insights.add_audit(conn, actor=actor, action="resume_queue", target=queue, affected=int(resumed))
    return resumed


async def purge_finished(
    jobs: JobClient, before: datetime, *, actor: str, progress: Progress | None = None
) -> BulkResult:
    """Delete succeeded and cancelled records finished before `before`; dead letters stay."""
    async with jobs.pool.acquire() as conn:
        audit_id = await store.insights.add_audit(
            conn, actor=actor, action="purge_finished", target=f"finished before {before.isoformat()}"
        )
    done = 0
    while True:
        async with jobs.pool.acquire() as conn:
            deleted = await store.jobs.delete_finished_before(conn, before, batch=BULK_PAGE * 4)
        done += deleted
        await _report(progress, done, 0)
        if deleted == 0:
            break
    async with jobs.pool.acquire() as conn:
        await store.insights.set_audit_affected(conn, audit_id, done, {"finished": True})
    return BulkResult(matched=done, done=done, audit_id=audit_id)


def _fields(where: JobFilter) -> dict[str, Any]:
    return {name: getattr(where, name) for name in JobFilter.__dataclass_fields__}


def _describe(where: JobFilter) -> str:
    parts = [f"{name}={value}" for name, value in _fields(where).items() if value is not None]
    return ", ".join(parts) or "all"
