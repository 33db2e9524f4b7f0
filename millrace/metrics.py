"""Prometheus metrics, read from the records at scrape time: the same figures from every web process.

Counters and histograms come from `millrace_stats` (see millrace.stats), which the claims and finishes
write, so they hold across every worker process and survive restarts, with no multiprocess registry to
keep. Gauges come from the pending part of the job table, the worker registry and Redis. A scrape costs
a handful of indexed queries, whatever the number of records: the counters of minutes that have settled
are summed once per process and kept (SettledTotals), and each scrape adds only the last minutes.

    app.mount("/metrics", millrace.metrics.metrics_app(lambda: client))
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from millrace import store
from millrace.client import JobClient
from millrace.outages import OUTAGES
from millrace.stats import BUCKETS_S
from millrace.store.pool import Executor


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


#: minutes older than this are taken as settled: no claim or finish writes to them any more (a worker's
#: clock further behind than this would have its counts missed by a process that cached them already)
SETTLED_AFTER = timedelta(minutes=10)


class SettledTotals:
    """The counters of every settled minute, summed once and then only extended: a month of per-minute
    rows costs one scan at the first scrape, not one per scrape. Retention folding old minutes into the
    base row keeps their sum, so what is cached stays right."""

    def __init__(self) -> None:
        self._upto: datetime | None = None
        self._settled: dict[tuple[str, str], store.insights.Totals] = {}
        self._lock = asyncio.Lock()

    async def totals(self, conn: Executor, now: datetime) -> list[store.insights.Totals]:
        async with self._lock:  # two scrapes at once sum the settled minutes once
            horizon = (now - SETTLED_AFTER).replace(second=0, microsecond=0)
            if self._upto is None or horizon > self._upto:
                settled = await store.insights.totals(conn, since=self._upto, before=horizon)
                self._settled = store.insights.added_totals(self._settled, settled)
                self._upto = horizon
            recent = await store.insights.totals(conn, since=self._upto)
            summed = store.insights.added_totals(self._settled, recent)
        return [summed[key] for key in sorted(summed)]


async def render(jobs: JobClient, queues: Sequence[str] = (), settled: SettledTotals | None = None) -> bytes:
    """The metrics in Prometheus's text format."""
    now = datetime.now(UTC)
    async with jobs.pool.acquire() as conn:
        totals = await (settled or SettledTotals()).totals(conn, now)
        pending = await store.insights.pending_by_function(conn)
        figures = await store.insights.queue_figures(conn, queues, now)
        workers = await store.insights.live_workers(conn)
        paused = await store.queues.paused_queues(conn)
        outbox = await store.insights.outbox_figures(conn)
    labels = ["queue", "function"]
    enqueued = CounterMetricFamily("millrace_jobs_enqueued", "Jobs enqueued (started once, or waiting)", labels=labels)
    started = CounterMetricFamily("millrace_jobs_started", "Attempts started", labels=labels)
    succeeded = CounterMetricFamily("millrace_jobs_succeeded", "Attempts that succeeded", labels=labels)
    retried = CounterMetricFamily("millrace_jobs_retried", "Attempts that failed and will be retried", labels=labels)
    dead = CounterMetricFamily("millrace_jobs_dead", "Jobs that ended dead", labels=labels)
    duration = HistogramMetricFamily("millrace_job_duration_seconds", "How long attempts ran", labels=labels)
    wait = HistogramMetricFamily(
        "millrace_job_wait_seconds", "How long jobs waited past their due time before starting", labels=labels
    )
    seen: set[tuple[str, str]] = set()
    for t in totals:
        key = (t.queue, t.function)
        seen.add(key)
        values = list(key)
        enqueued.add_metric(values, t.first_started + pending.get(key, 0))
        started.add_metric(values, t.started)
        succeeded.add_metric(values, t.succeeded)
        retried.add_metric(values, t.retried)
        dead.add_metric(values, t.dead)
        finished = t.succeeded + t.retried + t.dead
        duration.add_metric(values, _buckets(t.duration_le, finished), t.duration_sum_s)
        wait.add_metric(values, _buckets(t.wait_le, t.started), t.wait_sum_s)
    for key, n in pending.items():
        if key not in seen:
            enqueued.add_metric(list(key), n)
    depth = GaugeMetricFamily("millrace_queue_depth", "Jobs by queue and status now", labels=["queue", "status"])
    oldest = GaugeMetricFamily(
        "millrace_queue_oldest_waiting_seconds", "Age of the oldest job due and not started", labels=["queue"]
    )
    in_flight = GaugeMetricFamily("millrace_jobs_in_flight", "Attempts running now", labels=["queue"])
    for queue, f in figures.items():
        for status, n in (
            ("queued", f.queued),
            ("scheduled", f.scheduled),
            ("retrying", f.retrying),
            ("in_progress", f.in_progress),
            ("dead", f.dead),
        ):
            depth.add_metric([queue, status], n)
        oldest.add_metric([queue], f.oldest_waiting_s or 0.0)
        in_flight.add_metric([queue], f.in_progress)
    live = GaugeMetricFamily("millrace_workers_live", "Worker processes alive", labels=["queue"])
    for queue in sorted(set(workers) | set(figures)):
        live.add_metric([queue], workers.get(queue, 0))
    paused_family = GaugeMetricFamily("millrace_queue_paused", "1 while a queue is paused", labels=["queue"])
    for queue in sorted(set(paused) | set(figures)):
        paused_family.add_metric([queue], 1 if queue in paused else 0)
    outbox_family = GaugeMetricFamily("millrace_outbox_entries", "Jobs waiting for the relay", labels=["queue"])
    for entry in outbox:
        outbox_family.add_metric([entry.queue], entry.entries)
    families: list[Metric] = [
        enqueued,
        started,
        succeeded,
        retried,
        dead,
        duration,
        wait,
        depth,
        oldest,
        in_flight,
        live,
        paused_family,
        outbox_family,
    ]
    families.append(await _redis_family(jobs))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def _buckets(cumulative: Sequence[int], count: int) -> list[tuple[str, float]]:
    return [(repr(bound), float(n)) for bound, n in zip(BUCKETS_S, cumulative, strict=True)] + [("+Inf", float(count))]


async def _redis_family(jobs: JobClient) -> Metric:
    up = GaugeMetricFamily("millrace_redis_up", "1 when Redis answered this scrape")
    try:
        await jobs.redis.ping()
    except (RedisError, OSError):
        up.add_metric([], 0)
    else:
        up.add_metric([], 1)
    return up


def metrics_app(jobs: Callable[[], JobClient], queues: Sequence[str] = ()) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving the metrics; the application decides who may scrape it."""
    settled = SettledTotals()

    async def endpoint(request: Request) -> Response:
        try:
            body = await render(jobs(), queues, settled)
        except OUTAGES as error:
            return PlainTextResponse(f"records unavailable: {type(error).__name__}", 503, headers={"Retry-After": "5"})
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return endpoint
