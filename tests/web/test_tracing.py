"""A trace started by a web request goes on in the worker that runs the job the request enqueued."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Receive, Scope, Send

import queues
from millrace import Pool, store
from settings import Settings
from tests.jobs.workers import run_app_workers
from tests.spans import ancestors_of, ids_of, one_span, parent_of, record_spans
from web.app import create_app

CALLER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SPAN_ID = 0xB7AD6B7169203331


class RequestSpans:
    """What an instrumented web app does: each request runs in a SERVER span, the child of its traceparent."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        parent = TraceContextTextMapPropagator().extract(headers)
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER):
            await self.app(scope, receive, send)


@asynccontextmanager
async def traced_app(settings: Settings, tracer: Tracer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=RequestSpans(app, tracer))
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            yield client


async def test_the_request_span_is_the_parent_of_the_jobs_consumer_span(
    monkeypatch: pytest.MonkeyPatch, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Caller, request, enqueue (through the outbox: the signup's own transaction) and the job, one trace."""
    provider, exporter = record_spans(monkeypatch)
    settings = Settings(
        database_url=database_url, redis_url=redis_url, eml_dir=tmp_path / "mail", storage_folder=tmp_path / "files"
    )
    caller = {"traceparent": f"00-{CALLER_TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"}
    async with traced_app(settings, provider.get_tracer("tests")) as http:
        answer = await http.post("/users", json={"email": "ada@example.com", "name": "Ada"}, headers=caller)
    assert answer.status_code == 201
    job_id = answer.json()["welcome_job_id"]
    await run_app_workers(settings, queues.EMAILS)
    provider.shutdown()

    spans = exporter.get_finished_spans()
    producer = one_span(exporter, SpanKind.PRODUCER, job_id)
    consumer = one_span(exporter, SpanKind.CONSUMER, job_id)
    # recent FastAPI traces requests itself (a SERVER span of its own, its endpoint, its dependencies): the
    # request span is the SERVER span above the producer, whoever made it
    above = ancestors_of(producer, spans)
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER and ids_of(s) in above]
    assert parent_of(request) == (CALLER_TRACE_ID, CALLER_SPAN_ID)
    assert parent_of(consumer) == ids_of(producer)
    job = await store.jobs.get_job(pool, job_id)
    assert (job.status, job.trace_id) == ("succeeded", f"{CALLER_TRACE_ID:032x}")
