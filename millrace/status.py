"""A read-only status page of queue counts and recent jobs, as a router any ASGI app mounts.

`app.mount("/status", status.router(lambda request: pool))`; the application decides who may see it.
"""

from __future__ import annotations

from collections.abc import Callable

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, Router

from millrace import store
from millrace.records import ALL_STATUSES
from millrace.store.pool import Pool

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("millrace", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)


def router(pool_of: Callable[[Request], Pool]) -> Router:
    async def page(request: Request) -> Response:
        async with pool_of(request).acquire() as conn:
            statuses = await store.jobs.queue_statuses(conn)
            recent = await store.jobs.list_jobs(conn, limit=30)
            outbox = await store.outbox.count_entries(conn)
        if request.query_params.get("format") == "json":
            return JSONResponse({"queues": [{"queue": s.queue, **s.counts} for s in statuses], "outbox": outbox})
        html = _templates.get_template("status.html").render(
            statuses=statuses, recent=recent, outbox=outbox, columns=ALL_STATUSES
        )
        return HTMLResponse(html)

    return Router(routes=[Route("/", page)])
