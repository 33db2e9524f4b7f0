"""OpenTelemetry's SDK recording spans in memory for one test, and what tests ask of the spans it kept."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


def record_spans(monkeypatch: pytest.MonkeyPatch) -> tuple[TracerProvider, InMemorySpanExporter]:
    """Install an SDK provider as the global one for the test; spans end up in the exporter as they end.

    The API lets a process set its provider once and for good, so the global is swapped by hand, as
    OpenTelemetry's own test utilities do; monkeypatch puts the untraced default back afterwards, and
    no other test sees a span or a trace context.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    return provider, exporter


def one_span(exporter: InMemorySpanExporter, kind: SpanKind, job_id: str) -> ReadableSpan:
    """The one span of `kind` about the job `job_id` (its producer or its consumer)."""
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.kind == kind and (s.attributes or {}).get("messaging.message.id") == job_id
    ]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    """(trace id, span id) of the span's parent, or None for the root of a trace."""
    return None if span.parent is None else (span.parent.trace_id, span.parent.span_id)


def ids_of(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def ancestors_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[tuple[int, int]]:
    """The (trace id, span id) of every ancestor of `span` among `spans`, nearest first, and of the root's parent."""
    by_ids = {ids_of(s): s for s in spans}
    found: list[tuple[int, int]] = []
    parent = parent_of(span)
    while parent is not None:
        found.append(parent)
        above = by_ids.get(parent)
        parent = None if above is None else parent_of(above)
    return found
