"""The dashboard as an ASGI app: mount it in any Starlette or FastAPI app in one line.

    app.mount("/admin", millrace.dashboard.dashboard_app(DashboardConfig(jobs=lambda: client, ...)))

Pages are rendered on the server (jinja2, autoescaped); the live parts refresh themselves with htmx,
which is served from the dashboard itself: no CDN, and a Content-Security-Policy that allows only the
dashboard's own scripts and styles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from millrace.client import JobClient
from millrace.dashboard import actions, present, views
from millrace.dashboard.auth import CSRF_FIELD, CSRF_HEADER, Throttle, csrf_ok, csrf_token, current_user
from millrace.dashboard.config import DashboardConfig, Role
from millrace.outages import OUTAGES

_HERE = Path(__file__).parent
_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Viewer:
    name: str
    role: Role

    @property
    def can_act(self) -> bool:
        return self.role == "admin"


class Dashboard:
    """What every handler shares: the configuration, the templates and the login throttle."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.throttle = Throttle()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.globals.update(
            seconds=present.seconds, size=present.size, moment=present.moment, sparkline=present.sparkline
        )
        self.templates.filters["pretty"] = present.pretty_json
        #: bulk actions running in this process: audit id -> (done, total, finished)
        self.bulk: dict[int, tuple[int, int, bool]] = {}

    @property
    def jobs(self) -> JobClient:
        return self.config.jobs()

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        viewer = request.scope.get("millrace_viewer")
        html = self.templates.get_template(template).render(
            request=request,
            root=request.scope.get("root_path", ""),
            viewer=viewer,
            csrf=csrf_token(request),
            csrf_field=CSRF_FIELD,
            now=datetime.now(UTC),
            flash=request.session.pop("flash", None) if "session" in request.scope else None,
            **values,
        )
        return HTMLResponse(html, status_code)

    def url(self, request: Request, path: str) -> str:
        return str(request.scope.get("root_path", "")) + path

    def redirect(self, request: Request, path: str, flash: str | None = None) -> RedirectResponse:
        if flash is not None:
            request.session["flash"] = flash[:500]
        return RedirectResponse(self.url(request, path), status_code=303)


Handler = Callable[[Dashboard, Request], Awaitable[Response]]


def _page(
    dashboard: Dashboard, handler: Handler, *, acts: bool = False, admin_only: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """A handler behind the login; an acting one also behind the CSRF token and (unless it is the
    logout, which every login may do) the admin role."""

    async def endpoint(request: Request) -> Response:
        user = current_user(request, tuple(dashboard.config.logins))
        if user is None:
            if request.method == "GET":
                return dashboard.redirect(request, "/login")
            return PlainTextResponse("log in first", 401)
        viewer = Viewer(name=user[0], role=user[1])
        request.scope["millrace_viewer"] = viewer
        if acts:
            if admin_only and not viewer.can_act:
                return PlainTextResponse("this login can look but not act (read-only role)", 403)
            form = await request.form(max_files=0, max_fields=50, max_part_size=256 * 1024)
            sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not csrf_ok(request, sent if isinstance(sent, str) else None):
                return PlainTextResponse("the form's CSRF token is missing or wrong: reload the page", 403)
            request.scope["millrace_form"] = form
        try:
            return await handler(dashboard, request)
        except OUTAGES as error:
            return dashboard.render(
                request,
                "outage.html",
                status_code=503,
                error=type(error).__name__,
            )

    return endpoint


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present_names = {name.lower() for name, _ in headers}
                for name, value in _SECURITY_HEADERS.items():
                    if name.encode() not in present_names:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, with_headers)


def dashboard_app(config: DashboardConfig) -> Starlette:
    dashboard = Dashboard(config)
    pages: list[tuple[str, Handler]] = [
        ("/", views.overview),
        ("/workers", views.workers),
        ("/jobs", views.job_list),
        ("/jobs/{job_id:path}", views.job_page),
        ("/errors", views.error_groups),
        ("/stuck", views.stuck),
        ("/cron", views.cron),
        ("/reconciliation", views.reconciliation),
        ("/audit", views.audit),
        ("/bulk/{audit_id:int}", views.bulk_progress),
    ]
    acting: list[tuple[str, Handler]] = [
        ("/actions/retry-job", actions.retry_job),
        ("/actions/cancel-job", actions.cancel_job),
        ("/actions/abort-job", actions.abort_job),
        ("/actions/retry-matching", actions.retry_matching),
        ("/actions/retry-group", actions.retry_group),
        ("/actions/pause", actions.pause),
        ("/actions/resume", actions.resume),
        ("/actions/purge", actions.purge),
    ]
    routes = [
        Route("/login", _login_endpoint(dashboard), methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
        *(Route(path, _page(dashboard, handler), methods=["GET"]) for path, handler in pages),
        *(Route(path, _page(dashboard, handler, acts=True), methods=["POST"]) for path, handler in acting),
        Route("/logout", _page(dashboard, actions.logout, acts=True, admin_only=False), methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=config.session_secret,
                session_cookie="millrace_dashboard",
                max_age=config.session_max_age_s,
                same_site="strict",
                https_only=not config.development,
            ),
        ],
    )


def _login_endpoint(dashboard: Dashboard) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await actions.login(dashboard, request)

    return endpoint
