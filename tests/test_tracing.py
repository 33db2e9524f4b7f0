"""Trace context from enqueue to worker: the consumer span is the producer span's child, whichever way the
job reached Redis, and a context that is not one never stops a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.constants import job_key_prefix
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from millrace import JobClient, NoArgs, Pool, dispatch, payload, relay, store
from millrace.client import new_job
from millrace.reconcile import reconcile_queue
from tests.conftest import RunWorker, effects
from tests.sample import app
from tests.servers import free_port
from tests.spans import ids_of, one_span, parent_of, record_spans

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, exporter = record_spans(monkeypatch)
    yield provider, exporter
    provider.shutdown()


def consumers(exporter: InMemorySpanExporter, job_id: str) -> list[ReadableSpan]:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.kind == SpanKind.CONSUMER and (s.attributes or {}).get("messaging.message.id") == job_id
    ]
    return sorted(found, key=lambda s: str((s.attributes or {})["millrace.job.attempt"]))


async def test_a_job_runs_in_a_consumer_span_whose_parent_is_its_producer_span(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, run_worker: RunWorker
) -> None:
    provider, exporter = spans
    with provider.get_tracer("tests").start_as_current_span("request") as request:
        enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    await run_worker()
    producer = one_span(exporter, SpanKind.PRODUCER, enqueued.id)
    consumer = one_span(exporter, SpanKind.CONSUMER, enqueued.id)
    assert parent_of(producer) == (request.get_span_context().trace_id, request.get_span_context().span_id)
    assert parent_of(consumer) == ids_of(producer)
    assert (producer.name, consumer.name) == ("flaky publish", "flaky process")
    attributes = dict(consumer.attributes or {})
    assert isinstance(attributes.pop("millrace.worker"), str)
    assert attributes == {
        "messaging.system": "millrace",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "testq",
        "messaging.message.id": enqueued.id,
        "millrace.job.function": "flaky",
        "millrace.job.attempt": 1,
    }
    assert consumer.status.status_code == StatusCode.UNSET
    job = await client.find_job(enqueued.id)
    assert job is not None
    assert job.trace_id == f"{request.get_span_context().trace_id:032x}"


async def test_a_failed_attempt_records_its_error_and_the_retry_stays_in_the_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, run_worker: RunWorker
) -> None:
    _, exporter = spans
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1))
    await run_worker()
    producer = one_span(exporter, SpanKind.PRODUCER, enqueued.id)
    failed, succeeded = consumers(exporter, enqueued.id)
    assert parent_of(failed) == parent_of(succeeded) == ids_of(producer)
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ConnectionError: provider down"
    assert (failed.attributes or {})["error.type"] == "ConnectionError"
    assert [e.name for e in failed.events] == ["exception"]
    assert succeeded.status.status_code == StatusCode.UNSET


async def test_an_attempt_cut_off_by_its_timeout_ends_its_span_in_error(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, run_worker: RunWorker
) -> None:
    _, exporter = spans
    enqueued = await client.enqueue(app.HANG, NoArgs())
    await run_worker()
    attempts = consumers(exporter, enqueued.id)
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR]
    assert {(s.attributes or {})["error.type"] for s in attempts} == {"CancelledError"}


async def test_the_context_survives_the_outbox_while_redis_is_down(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    _, exporter = spans
    async with JobClient.open(redis_url=f"redis://127.0.0.1:{free_port()}/0", pool=pool) as cut_off:
        enqueued = await cut_off.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    assert enqueued.via == "outbox"
    assert await relay.deliver_all(pool, client.redis, None) == 1
    await run_worker()
    producer = one_span(exporter, SpanKind.PRODUCER, enqueued.id)
    assert parent_of(one_span(exporter, SpanKind.CONSUMER, enqueued.id)) == ids_of(producer)


async def test_the_context_survives_a_redis_restart_through_the_reconciler(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    _, exporter = spans
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    await client.redis.flushdb()  # what a restart without persistence leaves
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=timedelta(0)) == 1
    await run_worker()
    producer = one_span(exporter, SpanKind.PRODUCER, enqueued.id)
    assert parent_of(one_span(exporter, SpanKind.CONSUMER, enqueued.id)) == ids_of(producer)


async def test_a_groups_children_and_follow_up_continue_the_trace_it_was_enqueued_in(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    _, exporter = spans
    async with pool.acquire() as conn, conn.transaction():
        group = await client.enqueue_group(
            app.NOOP, [NoArgs()] * 2, then=(app.GROUP_DONE, app.LabelArgs(label="g")), conn=conn
        )
    await run_worker()
    await run_worker()  # the follow-up, enqueued by the last child's end
    then_id = await pool.fetchval("SELECT then_job_id FROM millrace_job_groups WHERE id = $1", group.id)
    (producer,) = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.PRODUCER]
    assert (producer.attributes or {})["messaging.batch.message_count"] == 2
    for job_id in [*group.children, then_id]:
        assert parent_of(one_span(exporter, SpanKind.CONSUMER, job_id)) == ids_of(producer)


def planted_job(record_id: str, trace_context: Any) -> dispatch.Dispatch:
    """A job in Redis as a producer of another version, or a hand, may have written it."""
    envelope = {"id": record_id, "args": {"fail_times": 0}, "base": 0, "trace": trace_context}
    now = datetime.now(UTC)
    return dispatch.build(
        redis_job_id=record_id, queue="testq", function="flaky", arq_args=[envelope], enqueued_at=now, run_at=None
    )


HOSTILE_CONTEXTS: list[Any] = [
    "00-not-a-context",
    ["traceparent", TRACEPARENT],
    {"traceparent": 5},
    {"traceparent": {"nested": TRACEPARENT}},
    {"traceparent": "00-not-hex-at-all"},
    {"traceparent": f"00-{0:032x}-{SPAN_ID:016x}-01"},  # the invalid all-zero trace id
    {"traceparent": "\x00\ud800<script>"},
    {"traceparent": TRACEPARENT + "-more"},  # version 00 has exactly four fields
    {"traceparent": "0" * 1_000_000},
    {"traceparent": TRACEPARENT, "extra": "x" * 100_000},
]


async def test_contexts_that_are_not_one_are_ignored_and_the_jobs_run(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    """Garbage, hostile text and huge values in a payload's trace context: each job runs, in a trace of its own
    (the last has a valid traceparent beside an unknown field, and keeps its parent)."""
    _, exporter = spans
    records = [new_job(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in HOSTILE_CONTEXTS]
    await store.jobs.insert_jobs(pool, records)
    await dispatch.push(client.redis, [planted_job(r.id, c) for r, c in zip(records, HOSTILE_CONTEXTS, strict=True)])
    await run_worker()
    assert sorted(e["job_id"] for e in await effects(pool, "ran")) == sorted(r.id for r in records)
    parents = [parent_of(one_span(exporter, SpanKind.CONSUMER, r.id)) for r in records]
    assert parents == [None] * (len(records) - 1) + [(TRACE_ID, SPAN_ID)]


#: any JSON value a payload can carry, often with the fields' own names
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["traceparent", "tracestate"]) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(ANY_JSON)
def test_any_value_as_a_payloads_context_is_read_without_error(value: Any) -> None:
    """The worker's deserializer accepts the job, and its context is one the propagator takes, or none."""
    envelope = {"id": "r1", "args": {"fail_times": 0}, "base": 0, "trace": value}
    record = payload.worker_loads({"flaky"})(payload.serialize_job("flaky", [envelope], 1))
    assert record["f"] == "flaky"
    context = payload.read_envelope(record["a"][0]).trace_context
    assert context is None or all(v.isascii() and v.isprintable() for v in context.values())
    TraceContextTextMapPropagator().extract(context or {})


async def test_a_tracestate_too_long_to_pass_on_is_dropped_and_its_traceparent_kept(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    _, exporter = spans
    record = new_job(app.FLAKY, app.FlakyArgs(fail_times=0))
    await store.jobs.insert_jobs(pool, [record])
    await dispatch.push(client.redis, [planted_job(record.id, {"traceparent": TRACEPARENT, "tracestate": "a=" * 400})])
    await run_worker()
    assert parent_of(one_span(exporter, SpanKind.CONSUMER, record.id)) == (TRACE_ID, SPAN_ID)


async def test_a_stored_context_edited_by_hand_is_not_sent_and_the_job_runs(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    _, exporter = spans
    enqueued = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))
    spoiled = {"traceparent": "x" * 100_000, "tracestate": ["not", "text"]}
    await pool.execute("UPDATE millrace_jobs SET trace_context = $2 WHERE id = $1", enqueued.id, spoiled)
    await client.redis.flushdb()
    assert await reconcile_queue(pool, client.redis, app.TESTQ.name, quiet_for=timedelta(0)) == 1
    payload = json.loads(await client.redis.get(job_key_prefix + enqueued.id))
    assert "trace" not in payload["a"][0]
    assert (await store.jobs.get_job(pool, enqueued.id)).trace_id is None
    await run_worker()
    assert [e["job_id"] for e in await effects(pool, "ran")] == [enqueued.id]
    assert parent_of(one_span(exporter, SpanKind.CONSUMER, enqueued.id)) is None


async def test_a_long_tracestate_is_cut_as_w3c_says_before_it_is_stored(
    spans: tuple[TracerProvider, InMemorySpanExporter], client: JobClient, pool: Pool
) -> None:
    """Members longer than 128 characters go first, then members from the end, until 512 characters remain."""
    members = [f"k{i}=" + "v" * 95 for i in range(10)]
    members.insert(2, "big=" + "w" * 200)
    upstream = TraceContextTextMapPropagator().extract({"traceparent": TRACEPARENT, "tracestate": ",".join(members)})
    token = otel_context.attach(upstream)
    try:
        enqueued = await client.enqueue(app.NOOP, NoArgs())
    finally:
        otel_context.detach(token)
    stored = await pool.fetchval("SELECT trace_context FROM millrace_jobs WHERE id = $1", enqueued.id)
    kept = [m for m in members if not m.startswith("big=")][:5]
    assert stored["tracestate"] == ",".join(kept)
    assert len(stored["tracestate"]) <= 512


async def test_without_an_sdk_nothing_is_stored_or_sent(client: JobClient, pool: Pool) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    assert await pool.fetchval("SELECT trace_context FROM millrace_jobs WHERE id = $1", enqueued.id) is None
    payload = json.loads(await client.redis.get(job_key_prefix + enqueued.id))
    assert set(payload["a"][0]) == {"id", "args", "base"}


async def test_without_an_sdk_a_context_from_upstream_is_passed_on(client: JobClient, pool: Pool) -> None:
    """An instrumentation on the API alone makes the incoming request's context current: the job carries it."""
    incoming = SpanContext(trace_id=TRACE_ID, span_id=SPAN_ID, is_remote=True, trace_flags=TraceFlags(1))
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(incoming)))
    try:
        enqueued = await client.enqueue(app.NOOP, NoArgs())
    finally:
        otel_context.detach(token)
    stored = await pool.fetchval("SELECT trace_context FROM millrace_jobs WHERE id = $1", enqueued.id)
    assert stored == {"traceparent": TRACEPARENT}
