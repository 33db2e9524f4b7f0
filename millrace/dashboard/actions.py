"""The dashboard's actions: thin over millrace.operations, which the command line shares.

Every action is a POST behind the admin role and the session's CSRF token (see app._page); it answers
with a redirect and a message, or a 4xx page saying what was wrong. Bulk actions run in a task of this
process and report their progress on a page of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from millrace import operations, store
from millrace.dashboard import present, views
from millrace.dashboard.auth import CSRF_FIELD, check_password_off_loop, csrf_ok, csrf_token, start_session
from millrace.store.insights import JobFilter
from millrace.text import unstorable_text

if TYPE_CHECKING:
    from millrace.dashboard.app import Dashboard

log = structlog.get_logger(__name__)

#: the oldest records a purge may be asked to keep: a purge of everything is not a click away
MIN_PURGE_DAYS = 1
_tasks: set[asyncio.Task[None]] = set()


def _form(request: Request) -> FormData:
    form = request.scope["millrace_form"]
    assert isinstance(form, FormData)
    return form


def _field(request: Request, name: str, limit: int = 500) -> str:
    """A form field, trimmed; what PostgreSQL could not store (NUL, lone surrogates) reads as empty."""
    value = _form(request).get(name, "")
    if not isinstance(value, str) or unstorable_text(value) is not None:
        return ""
    return value.strip()[:limit]


def _job_path(job_id: str) -> str:
    """A job page's path: an id is any text, and must not steer the link elsewhere (`../`, `?`, `#`)."""
    return "/jobs/" + urllib.parse.quote(job_id, safe="")


def _actor(request: Request) -> str:
    return str(request.scope["millrace_viewer"].name)


async def login(dashboard: Dashboard, request: Request) -> Response:
    if request.method == "GET":
        if not csrf_token(request):
            request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
        return dashboard.render(request, "login.html", error=None)
    address = request.client.host if request.client else "?"
    form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    sent = form.get(CSRF_FIELD)
    if not csrf_ok(request, sent if isinstance(sent, str) else None):
        return dashboard.render(request, "login.html", status_code=403, error="the form expired: try again")
    name, password = form.get("name", ""), form.get("password", "")
    if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
        return dashboard.render(request, "login.html", status_code=400, error="name and password, please")
    if not dashboard.throttle.admit(address):
        return dashboard.render(
            request, "login.html", status_code=429, error="too many failed logins: try again in a few minutes"
        )
    found = await check_password_off_loop(tuple(dashboard.config.logins), name, password)
    if found is None:
        log.warning("dashboard_login_refused", name=name[:100], address=address)
        return dashboard.render(request, "login.html", status_code=401, error="wrong name or password")
    dashboard.throttle.forgive(address)
    start_session(request, found)
    log.info("dashboard_login", name=found.name, role=found.role, address=address)
    return dashboard.redirect(request, "/")


async def logout(dashboard: Dashboard, request: Request) -> Response:
    request.session.clear()
    return dashboard.redirect(request, "/login")


async def retry_job(dashboard: Dashboard, request: Request) -> Response:
    job_id = _field(request, "job_id", 300)
    edited = _form(request).get("args")
    if isinstance(edited, str) and present.REDACTED in edited:
        # copied from the page: the real values are not there to keep, and the mark is no value
        reason = f"the arguments still hold {present.REDACTED}: give those fields their values, or leave the box empty"
        return dashboard.render(request, "refused.html", status_code=422, reason=reason, back=_job_path(job_id))
    try:
        outcome = await operations.retry_one(
            dashboard.jobs,
            job_id,
            actor=_actor(request),
            edited_args=edited if isinstance(edited, str) else None,
            refs=dashboard.config.refs,
        )
    except operations.ActionRefused as refused:
        return dashboard.render(request, "refused.html", status_code=422, reason=str(refused), back=_job_path(job_id))
    message = "retried: it is queued again" if outcome == "retried" else "it was no longer dead"
    return dashboard.redirect(request, _job_path(job_id), message)


async def cancel_job(dashboard: Dashboard, request: Request) -> Response:
    job_id = _field(request, "job_id", 300)
    outcome = await operations.cancel(dashboard.jobs, job_id, actor=_actor(request))
    messages = {
        "cancelled": "cancelled",
        "running": "it started meanwhile: it was not cancelled",
        "not_pending": "only a waiting job can be cancelled",
    }
    return dashboard.redirect(request, _job_path(job_id), messages[outcome])


async def abort_job(dashboard: Dashboard, request: Request) -> Response:
    job_id = _field(request, "job_id", 300)
    outcome = await operations.abort(dashboard.jobs, job_id, actor=_actor(request))
    messages = {
        "aborting": "abort asked for: its worker cancels it at its next heartbeat",
        "cancelled": "it had not started: it was cancelled",
        "not_pending": "it has finished already: nothing to abort",
    }
    return dashboard.redirect(request, _job_path(job_id), messages[outcome])


def _start_bulk(dashboard: Dashboard, request: Request, where: JobFilter, action: str) -> Response:
    actor = _actor(request)
    started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    audit_id = 0

    def on_started(entry_id: int) -> None:
        nonlocal audit_id
        audit_id = entry_id
        started.set_result(entry_id)

    def progress(done: int, total: int) -> None:
        dashboard.bulk[audit_id] = (done, total, False)

    async def run() -> None:
        try:
            result = await operations.retry_dead(
                dashboard.jobs, where, actor=actor, progress=progress, action=action, started=on_started
            )
            dashboard.bulk[result.audit_id] = (result.done, result.matched, True)
        except Exception as error:
            log.exception("dashboard_bulk_action_failed", action=action)
            if not started.done():
                started.set_exception(error)

    task = asyncio.get_running_loop().create_task(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return _BulkStarted(dashboard, request, started)


class _BulkStarted(Response):
    """Answers once the bulk action has its audit id: a redirect to its progress page."""

    def __init__(self, dashboard: Dashboard, request: Request, started: asyncio.Future[int]) -> None:
        super().__init__()
        self._dashboard, self._request, self._started = dashboard, request, started

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        try:
            audit_id = await asyncio.wait_for(asyncio.shield(self._started), 30)
        except Exception as error:
            answer: Response = PlainTextResponse(f"the action could not start: {type(error).__name__}", 503)
        else:
            answer = self._dashboard.redirect(self._request, f"/bulk/{audit_id}")
        await answer(scope, receive, send)


async def retry_matching(dashboard: Dashboard, request: Request) -> Response:
    """Retry the dead among the jobs the list's filter shows: the form posts to the list's own query."""
    where, problems = views.filter_from(request, dashboard.config.redacted)
    if problems:
        return dashboard.render(request, "refused.html", status_code=422, reason="; ".join(problems), back="/jobs")
    return _start_bulk(dashboard, request, dataclasses.replace(where, status="dead"), "retry_dead")


async def retry_group(dashboard: Dashboard, request: Request) -> Response:
    fingerprint = _field(request, "fingerprint", 64)
    if not fingerprint:
        return dashboard.render(request, "refused.html", status_code=422, reason="which error group?", back="/errors")
    return _start_bulk(dashboard, request, JobFilter(fingerprint=fingerprint, status="dead"), "retry_error_group")


async def _known_queue(dashboard: Dashboard, request: Request) -> str | None:
    """The form's queue, if it is declared or has records or workers (an application's queues may be
    more than this web app declares)."""
    queue = _field(request, "queue", 200)
    if queue in {q.name for q in dashboard.config.queues}:
        return queue
    async with dashboard.jobs.pool.acquire() as conn:
        known = await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM millrace_workers WHERE queue = $1)
                   OR EXISTS (SELECT 1 FROM millrace_jobs WHERE queue = $1)""",
            queue,
        )
    return queue if known else None


async def pause(dashboard: Dashboard, request: Request) -> Response:
    queue = await _known_queue(dashboard, request)
    if queue is None:
        return dashboard.render(request, "refused.html", status_code=422, reason="no such queue", back="/")
    paused = await operations.pause_queue(dashboard.jobs, queue, actor=_actor(request))
    return dashboard.redirect(
        request,
        "/",
        f"{queue} paused: its workers finish what they hold and take nothing new"
        if paused
        else f"{queue} was paused already",
    )


async def resume(dashboard: Dashboard, request: Request) -> Response:
    queue = await _known_queue(dashboard, request)
    if queue is None:
        return dashboard.render(request, "refused.html", status_code=422, reason="no such queue", back="/")
    resumed = await operations.resume_queue(dashboard.jobs, queue, actor=_actor(request))
    return dashboard.redirect(request, "/", f"{queue} resumed" if resumed else f"{queue} was not paused")


async def purge(dashboard: Dashboard, request: Request) -> Response:
    raw = _field(request, "older_than_days", 6)
    if not (raw.isascii() and raw.isdigit()) or int(raw) < MIN_PURGE_DAYS:
        reason = f"keep at least {MIN_PURGE_DAYS} day of records: give a whole number of days"
        return dashboard.render(request, "refused.html", status_code=422, reason=reason, back="/audit")
    before = datetime.now(UTC) - timedelta(days=min(int(raw), 36500))
    result = await operations.purge_finished(dashboard.jobs, before, actor=_actor(request))
    async with dashboard.jobs.pool.acquire() as conn:
        folded = await store.insights.fold_stats_before(conn, before)
    return dashboard.redirect(
        request, "/audit", f"purged {result.done} finished records older than {raw} days ({folded} stats rows folded)"
    )
