"""W3C trace context from the code that enqueues a job to the worker that runs it, on OpenTelemetry's API.

At enqueue a PRODUCER span is started, and its context (`traceparent`, `tracestate`) travels with the
job: in its record and outbox row, so that it survives a Redis outage, and in its Redis payload, so that
the worker needs no read to find it. The worker runs the job's body in a CONSUMER span, that context's
child. Only the API is used: the application chooses the SDK and the exporter. With none set up, nothing
happens here (no span, no context stored or sent) unless a context already came in from upstream, which
is passed on.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeGuard

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from millrace.context import JobContext

#: a job's trace context as stored and sent: W3C's two header fields, by their header names
TraceContext = dict[str, str]

SYSTEM = "millrace"
#: W3C asks every vendor to pass on at least 512 characters of tracestate; past that it is cut, as W3C says
MAX_TRACESTATE_CHARS = 512
#: a version-00 traceparent is exactly 55 characters; later versions may append fields
_MAX_TRACEPARENT_CHARS = 256
#: W3C: when cutting tracestate, drop the members longer than this first
_LONG_MEMBER_CHARS = 128
_MAX_STATUS_CHARS = 500

# W3C's format, whatever propagator the application set globally: the job record is Millrace's own
# carrier, and the global one usually adds baggage, which may hold anything (personal data included)
# and would be kept in every job record for as long as the record lives.
_W3C = TraceContextTextMapPropagator()


class Publish:
    """An enqueue under way: its PRODUCER span (current while it lasts) and the context its jobs carry."""

    __slots__ = ("_span", "_token", "context")

    def __init__(self, span: Span | None, context: TraceContext | None) -> None:
        self._span = span
        self._token: Token[otel_context.Context] | None = None
        #: what each job enqueued here stores and sends; None when nothing traces
        self.context = context

    def identify(self, job_id: str) -> None:
        """The job's id, once known (a job key may have given the id of a job already pending)."""
        if self._span is not None:
            self._span.set_attribute("messaging.message.id", job_id)

    def __enter__(self) -> Publish:
        if self._span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._span is None:
            return
        if self._token is not None:
            otel_context.detach(self._token)
        if error is not None:
            _failed(self._span, error)
        self._span.end()


_UNTRACED = Publish(None, None)


def publishing(queue: str, function: str, *, jobs: int = 1) -> Publish:
    """Trace an enqueue of `jobs` jobs of `function`: `with publishing(...) as p:` then `p.context`."""
    tracer = _tracer()
    if tracer is None:
        # no SDK in this process; a context an instrumentation received on the API alone is passed on
        return _UNTRACED if not trace.get_current_span().get_span_context().is_valid else Publish(None, _current())
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": queue,
        "millrace.job.function": function,
    }
    if jobs != 1:
        attributes["messaging.batch.message_count"] = jobs
    span = tracer.start_span(f"{function} publish", kind=SpanKind.PRODUCER, attributes=attributes)
    return Publish(span, _current(trace.set_span_in_context(span)))


@contextmanager
def consuming(job: JobContext[Any], carrier: TraceContext | None) -> Iterator[None]:
    """Run an attempt's body in a CONSUMER span, the child of the context its job was enqueued under.

    Without such a context (a cron run, a job enqueued untraced) the span starts a trace of its own.
    """
    tracer = _tracer()
    if tracer is None:
        yield
        return
    # a fresh context: nothing of the worker's own (arq's task) may become the job's parent
    parent = _W3C.extract(carrier, otel_context.Context()) if carrier else otel_context.Context()
    attributes: dict[str, str | int] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": job.queue,
        "messaging.message.id": job.job_id,
        "millrace.job.function": job.function,
        "millrace.job.attempt": job.attempt,
        "millrace.worker": job.worker,
    }
    with tracer.start_as_current_span(
        f"{job.function} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except (Exception, asyncio.CancelledError) as error:
            _failed(span, error)
            raise


def received(raw: object) -> TraceContext | None:
    """The trace context a payload or a row brought, if it has the shape one has; never raises.

    Shape, size and alphabet (W3C's fields are printable ASCII) are checked here; the propagator then
    ignores a traceparent it cannot parse, and the members of a tracestate it cannot.
    """
    if not isinstance(raw, dict):
        return None
    parent, state = raw.get("traceparent"), raw.get("tracestate", "")
    if not _header_text(parent, _MAX_TRACEPARENT_CHARS) or not parent:
        return None
    if not _header_text(state, MAX_TRACESTATE_CHARS):
        state = ""  # the parent still holds without it
    return {"traceparent": parent, "tracestate": state} if state else {"traceparent": parent}


def _header_text(value: object, max_chars: int) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= max_chars and value.isascii() and value.isprintable()


def _current(context: otel_context.Context | None = None) -> TraceContext | None:
    carrier: TraceContext = {}
    _W3C.inject(carrier, context)
    if "traceparent" not in carrier:
        return None
    if len(carrier.get("tracestate", "")) > MAX_TRACESTATE_CHARS:
        carrier["tracestate"] = _cut_tracestate(carrier["tracestate"])
        if not carrier["tracestate"]:
            del carrier["tracestate"]
    return carrier


def _cut_tracestate(header: str) -> str:
    """W3C's way to shorten tracestate: drop its long members first, then members from its end."""
    members = [m for m in header.split(",") if len(m) <= _LONG_MEMBER_CHARS]
    while len(",".join(members)) > MAX_TRACESTATE_CHARS:
        members.pop()
    return ",".join(members)


def _tracer() -> Tracer | None:
    """The global provider's tracer, or None while no SDK is set up (then the API would only do nothing)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return _tracer_of(provider)


@functools.lru_cache(maxsize=4)
def _tracer_of(provider: TracerProvider) -> Tracer:
    # keyed by the provider: a provider set later (or a test's own) gets its own tracer
    return provider.get_tracer("millrace")


def _failed(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__qualname__)
    if isinstance(error, asyncio.CancelledError):
        description = "cancelled: a timeout or a shutdown cut it short"
    else:
        span.record_exception(error)
        description = f"{type(error).__name__}: {error}"
    span.set_status(Status(StatusCode.ERROR, description[:_MAX_STATUS_CHARS]))
