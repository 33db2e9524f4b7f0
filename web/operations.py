"""The operator's side of the web app: the dashboard at /admin, metrics, liveness and readiness.

The dashboard is mounted only when the operator's password hash is configured: without one, nobody
gets in (the web app refuses to start that way outside development). Metrics ask for the operator's
Basic login, as Prometheus's `basic_auth` sends it.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

import millrace.metrics
import queues
from millrace import JobClient
from millrace.dashboard import DEFAULT_REDACTED, DashboardConfig, dashboard_app
from producers.catalog import all_refs
from settings import Settings
from web.auth import operator


def mount_operations(app: FastAPI, settings: Settings) -> None:
    def jobs() -> JobClient:
        client: JobClient = app.state.millrace.jobs
        return client

    queue_names = [q.name for q in queues.ALL]
    app.add_api_route(
        "/metrics",
        millrace.metrics.metrics_app(jobs, queue_names),
        methods=["GET"],
        include_in_schema=False,
        dependencies=[Depends(operator)],
    )
    app.add_api_route("/livez", livez, methods=["GET"], include_in_schema=False)
    logins = settings.dashboard_logins()
    if logins:
        config = DashboardConfig(
            jobs=jobs,
            logins=logins,
            session_secret=settings.dashboard_secret(),
            queues=queues.ALL,
            refs=all_refs(),
            redacted=(*DEFAULT_REDACTED, *(name.lower() for name in settings.dashboard_redacted)),
            development=settings.environment == "development",
        )
        app.mount("/admin", dashboard_app(config))
    else:
        app.add_api_route("/admin", no_dashboard, methods=["GET"], include_in_schema=False)
    app.add_api_route("/", to_dashboard, methods=["GET"], include_in_schema=False)


async def livez() -> JSONResponse:
    """The process answers (readiness, with PostgreSQL and Redis, is /healthz)."""
    return JSONResponse({"status": "ok"})


async def to_dashboard() -> Response:
    return RedirectResponse("/admin/", status_code=307)


async def no_dashboard() -> Response:
    return PlainTextResponse("the dashboard needs OPERATOR_PASSWORD_HASH to be set", 404)
