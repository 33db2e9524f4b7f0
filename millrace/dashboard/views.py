"""The dashboard's pages: each reads what it shows through an index (store.insights) and renders it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from millrace import stats, store
from millrace.dashboard import present, redis_state
from millrace.dashboard.cron_ledger import cron_ledger
from millrace.records import ALL_STATUSES
from millrace.store.insights import JobFilter
from millrace.text import unstorable_text

if TYPE_CHECKING:
    from millrace.dashboard.app import Dashboard

PAGE_SIZE = 50
#: what a filter's dates may be: PostgreSQL holds more, but nothing here is older or newer
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)
#: how many pending records and Redis entries the reconciliation page compares per queue
RECONCILE_SAMPLE = 500
#: the reconciler leaves records younger than this alone: they may still be on their way to Redis
RECONCILE_QUIET = timedelta(seconds=30)


def _queue_names(dashboard: Dashboard) -> list[str]:
    return [q.name for q in dashboard.config.queues]


async def overview(dashboard: Dashboard, request: Request) -> Response:
    now = datetime.now(UTC)
    jobs = dashboard.jobs
    async with jobs.pool.acquire() as conn:
        figures = await store.insights.queue_figures(conn, _queue_names(dashboard), now)
        paused = await store.queues.paused_queues(conn)
        outbox = {o.queue: o for o in await store.insights.outbox_figures(conn)}
    rows = []
    for queue, figure in figures.items():
        recent = figure.finished_per_minute[-5:]
        arrivals = figure.started_per_minute[-5:]
        completion_rate = sum(recent) / 300
        arrival_rate = sum(arrivals) / 300
        rows.append(
            {
                "figure": figure,
                "paused": paused.get(queue),
                "outbox": outbox.get(queue),
                "per_minute": sum(figure.finished_per_minute[-1:]),
                "duration_p50": stats.quantile(figure.duration_le, figure.duration_count, 0.5),
                "duration_p95": stats.quantile(figure.duration_le, figure.duration_count, 0.95),
                "wait_p50": stats.quantile(figure.wait_le, figure.wait_count, 0.5),
                "wait_p95": stats.quantile(figure.wait_le, figure.wait_count, 0.95),
                "drain_s": stats.drain_estimate_s(figure.waiting, arrival_rate, completion_rate),
            }
        )
    try:
        memory: redis_state.RedisMemory | None = await redis_state.redis_memory(jobs.redis)
        redis_error = None
    except redis_state.REDIS_ERRORS as error:
        memory, redis_error = None, type(error).__name__
    return dashboard.render(request, "overview.html", rows=rows, memory=memory, redis_error=redis_error)


async def workers(dashboard: Dashboard, request: Request) -> Response:
    now = datetime.now(UTC)
    async with dashboard.jobs.pool.acquire() as conn:
        found = await store.insights.list_workers(conn, include_stopped_since=now - timedelta(hours=1))
    return dashboard.render(request, "workers.html", workers=found)


def filter_from(request: Request, redacted: Sequence[str]) -> tuple[JobFilter, list[str]]:
    """The job filter the query string asks for; what it cannot read is said, never a 500. The job
    list shows it, and its bulk retry acts on it, so both always mean the same jobs."""
    query = request.query_params
    problems: list[str] = []

    def text(name: str, limit: int = 200) -> str | None:
        value = query.get(name, "").strip()
        if len(value) > limit:
            problems.append(f"{name} is longer than {limit} characters")
            return None
        unstorable = unstorable_text(value)
        if unstorable is not None:
            problems.append(f"{name}: {unstorable}")
            return None
        return value or None

    def when(name: str) -> datetime | None:
        value = text(name, 40)
        if value is None:
            return None
        moment = _moment(value)
        if moment is None:
            problems.append(f"{name} is not a date and time between 1970 and 9999 (2026-01-31T12:00)")
        return moment

    status = text("status", 20)
    if status is not None and status not in ALL_STATUSES:
        problems.append(f"status must be one of {', '.join(ALL_STATUSES)}")
        status = None
    where = JobFilter(
        queue=text("queue"),
        function=text("function"),
        status=status,
        error_type=text("error_type"),
        fingerprint=text("fingerprint", 64),
        since=when("since"),
        until=when("until"),
        search=text("q", 500),
    )
    searched, equals, _ = (where.search or "").partition("=")
    if equals and present.hidden(searched.strip(), redacted):
        # a hidden field's value is not shown, so it cannot be looked for either: one guess at a time
        # would tell it
        problems.append(f"{searched.strip()} is a redacted field: it cannot be searched")
        where = dataclasses.replace(where, search=None)
    return where, problems


def _moment(value: str) -> datetime | None:
    """An ISO date and time (UTC unless it says otherwise) that PostgreSQL can hold, or None."""
    try:
        moment = datetime.fromisoformat(value)
        moment = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment if _EARLIEST <= moment <= _LATEST else None


async def job_list(dashboard: Dashboard, request: Request) -> Response:
    where, problems = filter_from(request, dashboard.config.redacted)
    before = None
    cursor = request.query_params.get("before", "")
    if cursor:
        stamp, _, last_id = cursor.partition("|")
        try:
            if unstorable_text(last_id) is not None:
                raise ValueError(last_id)
            moment = _moment(stamp)
            if moment is None:
                raise ValueError(stamp)
            before = (moment, last_id)
        except ValueError:
            problems.append("the page cursor is not one this page made")
    async with dashboard.jobs.pool.acquire() as conn:
        found = await store.insights.find_jobs(conn, where, limit=PAGE_SIZE, before=before)
    next_cursor = f"{found[-1].enqueued_at.isoformat()}|{found[-1].id}" if len(found) == PAGE_SIZE else None
    query = {k: v for k, v in request.query_params.items() if k != "before" and v}
    return dashboard.render(
        request,
        "jobs.html",
        jobs=found,
        where=where,
        problems=problems,
        statuses=ALL_STATUSES,
        queues=_queue_names(dashboard),
        next_cursor=next_cursor,
        query=query,
        status_code=422 if problems else 200,
    )


async def job_page(dashboard: Dashboard, request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if unstorable_text(job_id) is not None or len(job_id) > 300:  # no record can have such an id
        return dashboard.render(request, "missing.html", status_code=404, what="job", key=job_id[:300])
    async with dashboard.jobs.pool.acquire() as conn:
        job = await store.jobs.find_job(conn, job_id)
        if job is None:
            return dashboard.render(request, "missing.html", status_code=404, what="job", key=job_id)
        attempts = await store.jobs.list_attempts(conn, job_id)
        history = await conn.fetchval("SELECT args_history FROM millrace_jobs WHERE id = $1", job_id)
    names = [n.lower() for n in dashboard.config.redacted]
    return dashboard.render(
        request,
        "job.html",
        job=job,
        args=present.redact(job.args, names),
        attempts=attempts,
        history=[{**h, "args": present.redact(h.get("args"), names)} for h in (history or [])],
        trace_id=getattr(job, "trace_id", None),
    )


async def error_groups(dashboard: Dashboard, request: Request) -> Response:
    async with dashboard.jobs.pool.acquire() as conn:
        groups = await store.insights.error_groups(conn, now=datetime.now(UTC))
    return dashboard.render(request, "errors.html", groups=groups)


async def stuck(dashboard: Dashboard, request: Request) -> Response:
    timeouts = {q.name: q.timeout_s for q in dashboard.config.queues}
    async with dashboard.jobs.pool.acquire() as conn:
        found = await store.insights.stuck_jobs(conn, timeouts)
    return dashboard.render(request, "stuck.html", stuck=found)


async def cron(dashboard: Dashboard, request: Request) -> Response:
    now = datetime.now(UTC)
    async with dashboard.jobs.pool.acquire() as conn:
        ledgers = await cron_ledger(conn, now, timedelta(days=1))
    return dashboard.render(request, "cron.html", ledgers=ledgers)


async def reconciliation(dashboard: Dashboard, request: Request) -> Response:
    """Pending records Redis does not hold, Redis jobs with no record, and the outbox: the proof that
    nothing is lost, on a sample of each queue (the reconciler itself goes through all of them)."""
    now = datetime.now(UTC)
    jobs = dashboard.jobs
    rows = []
    async with jobs.pool.acquire() as conn:
        outbox = {o.queue: o for o in await store.insights.outbox_figures(conn)}
        for queue in _queue_names(dashboard):
            pending = await store.insights.pending_sample(
                conn, queue, older_than=now - RECONCILE_QUIET, limit=RECONCILE_SAMPLE
            )
            try:
                missing = await redis_state.missing_from_redis(jobs.redis, pending)
                in_redis = await redis_state.queued_record_ids(jobs.redis, queue, limit=RECONCILE_SAMPLE)
                length = await redis_state.queue_length(jobs.redis, queue)
                error = None
            except redis_state.REDIS_ERRORS as redis_error:
                missing, in_redis, length, error = [], [], 0, type(redis_error).__name__
            known = await store.insights.known_ids(conn, in_redis)
            rows.append(
                {
                    "queue": queue,
                    "pending_checked": len(pending),
                    "missing": missing,
                    "redis_length": length,
                    "redis_checked": len(in_redis),
                    "unknown": sorted(set(in_redis) - known),
                    "outbox": outbox.get(queue),
                    "error": error,
                }
            )
    return dashboard.render(request, "reconciliation.html", rows=rows, quiet_s=RECONCILE_QUIET.total_seconds())


async def audit(dashboard: Dashboard, request: Request) -> Response:
    async with dashboard.jobs.pool.acquire() as conn:
        entries = await store.insights.audit_log(conn)
    return dashboard.render(request, "audit.html", entries=entries)


async def bulk_progress(dashboard: Dashboard, request: Request) -> Response:
    audit_id = request.path_params["audit_id"]
    if not 0 < audit_id < 2**63:  # not an id PostgreSQL's bigint can hold: no such action
        return dashboard.render(request, "missing.html", status_code=404, what="action", key=str(audit_id))
    running = dashboard.bulk.get(audit_id)
    async with dashboard.jobs.pool.acquire() as conn:
        entry = await conn.fetchrow(
            "SELECT id, at, actor, action, target, affected, details FROM millrace_audit_log WHERE id = $1", audit_id
        )
    if entry is None:
        return dashboard.render(request, "missing.html", status_code=404, what="action", key=str(audit_id))
    done, total, finished = running if running else (entry["affected"], entry["details"].get("matched", 0), True)
    finished = finished or bool(entry["details"].get("finished"))
    return dashboard.render(request, "bulk.html", entry=entry, done=done, total=total, finished=finished)
