"""What the dashboard, the metrics and the operations commands read: every query bounded by an index.

Counts of finished work come from `millrace_stats` (see millrace.stats), never from counting records;
counts of pending work from the (queue, status) index, which holds only what waits; lists are keyset
or LIMIT pages in an indexed order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from millrace.records import JobRecord
from millrace.stats import BUCKETS_S
from millrace.store.jobs import JOB_COLUMNS, job_from_row
from millrace.store.pool import Executor
from millrace.store.workers import LIVE_WORKER_SQL

#: the statuses counted from the job table: what waits or runs (the rest come from the stats)
LIVE_STATUSES = ("queued", "deferred", "retrying", "in_progress")


@dataclass(slots=True, kw_only=True)
class QueueFigures:
    queue: str
    queued: int = 0
    scheduled: int = 0
    retrying: int = 0
    in_progress: int = 0
    dead: int = 0
    oldest_waiting_s: float | None = None
    succeeded_hour: int = 0
    failed_hour: int = 0
    succeeded_day: int = 0
    failed_day: int = 0
    #: attempts started and finished per minute over the last hour, oldest first (60 each)
    started_per_minute: list[int] = field(default_factory=list)
    finished_per_minute: list[int] = field(default_factory=list)
    duration_le: list[int] = field(default_factory=list)
    duration_count: int = 0
    wait_le: list[int] = field(default_factory=list)
    wait_count: int = 0

    @property
    def waiting(self) -> int:
        return self.queued + self.retrying


async def queue_figures(conn: Executor, queues: Sequence[str], now: datetime) -> dict[str, QueueFigures]:
    """Every queue's figures for the overview; `queues` adds the declared ones that have no record yet."""
    figures = {q: QueueFigures(queue=q) for q in queues}
    rows = await conn.fetch(
        """SELECT queue, status, count(*) AS n,
                  extract(epoch FROM $1 - min(coalesce(run_at, enqueued_at))
                      FILTER (WHERE status <> 'in_progress' AND coalesce(run_at, enqueued_at) <= $1)) AS oldest_s,
                  count(*) FILTER (WHERE status = 'queued' AND run_at > $1) AS scheduled_later
           FROM millrace_jobs WHERE status = ANY($2::text[]) GROUP BY queue, status""",
        now,
        [*LIVE_STATUSES, "dead"],
    )
    for row in rows:
        entry = figures.setdefault(row["queue"], QueueFigures(queue=row["queue"]))
        status, n = row["status"], row["n"]
        if status == "deferred":
            entry.scheduled += n
        elif status == "queued":
            entry.queued += n
        elif status == "retrying":
            entry.retrying += n
        elif status == "in_progress":
            entry.in_progress += n
        else:
            entry.dead += n
        if row["oldest_s"] is not None:
            entry.oldest_waiting_s = max(float(row["oldest_s"]), entry.oldest_waiting_s or 0.0)
    minute = now.replace(second=0, microsecond=0)
    hour_start = minute - timedelta(minutes=59)
    stats = await conn.fetch(
        """SELECT queue, minute, sum(started) AS started, sum(succeeded) AS succeeded,
                  sum(retried + dead) AS failed, sum(dead) AS dead,
                  minute >= $2 AS in_hour
           FROM millrace_stats WHERE minute >= $1 GROUP BY queue, minute""",
        minute - timedelta(days=1),
        hour_start,
    )
    for row in stats:
        entry = figures.setdefault(row["queue"], QueueFigures(queue=row["queue"]))
        entry.succeeded_day += row["succeeded"]
        entry.failed_day += row["failed"]
        if row["in_hour"]:
            entry.succeeded_hour += row["succeeded"]
            entry.failed_hour += row["failed"]
    for entry in figures.values():
        entry.started_per_minute = [0] * 60
        entry.finished_per_minute = [0] * 60
    for row in stats:
        if row["in_hour"]:
            index = int((row["minute"] - hour_start).total_seconds() // 60)
            if 0 <= index < 60:
                entry = figures[row["queue"]]
                entry.started_per_minute[index] += row["started"]
                entry.finished_per_minute[index] += row["succeeded"] + row["failed"]
    for queue, histograms in (await histograms_since(conn, hour_start)).items():
        entry = figures.setdefault(queue, QueueFigures(queue=queue))
        entry.duration_le, entry.duration_count, entry.wait_le, entry.wait_count = histograms
    return dict(sorted(figures.items()))


async def histograms_since(conn: Executor, since: datetime) -> dict[str, tuple[list[int], int, list[int], int]]:
    """Per queue, the duration and wait histograms summed since `since`, with their counts."""
    rows = await conn.fetch(
        """SELECT queue, sum(succeeded + retried + dead) AS finished, sum(started) AS started,
                  array_agg(duration_le) AS duration_le, array_agg(wait_le) AS wait_le
           FROM millrace_stats WHERE minute >= $1 GROUP BY queue""",
        since,
    )
    return {
        r["queue"]: (_add_all(r["duration_le"]), int(r["finished"]), _add_all(r["wait_le"]), int(r["started"]))
        for r in rows
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """Counters since the beginning (retention folds old minutes into one row: they never go down)."""

    queue: str
    function: str
    started: int
    first_started: int
    succeeded: int
    retried: int
    dead: int
    duration_le: list[int]
    duration_sum_s: float
    wait_le: list[int]
    wait_sum_s: float


def _add_all(histograms: Sequence[Sequence[int]]) -> list[int]:
    summed = [0] * len(BUCKETS_S)
    for histogram in histograms:
        for i, value in enumerate(histogram):
            summed[i] += value
    return summed


def _bucket_sums(column: str) -> str:
    """Each bucket of a histogram column summed in SQL (an array per row, summed element by element)."""
    return ", ".join(f"sum({column}[{i}]) AS {column}_{i}" for i in range(1, len(BUCKETS_S) + 1))


_TOTALS = f"""SELECT queue, function, sum(started) AS started, sum(first_started) AS first_started,
           sum(succeeded) AS succeeded, sum(retried) AS retried, sum(dead) AS dead,
           sum(duration_sum_s) AS duration_sum_s, sum(wait_sum_s) AS wait_sum_s,
           {_bucket_sums("duration_le")}, {_bucket_sums("wait_le")}
    FROM millrace_stats
    WHERE ($1::timestamptz IS NULL OR minute >= $1) AND ($2::timestamptz IS NULL OR minute < $2)
    GROUP BY queue, function ORDER BY queue, function"""


async def totals(
    conn: Executor, *, since: datetime | None = None, before: datetime | None = None
) -> dict[tuple[str, str], Totals]:
    """The counters of the minutes in [since, before) (either end open when None), by queue and function."""
    rows = await conn.fetch(_TOTALS, since, before)
    found = {}
    for r in rows:
        found[(r["queue"], r["function"])] = Totals(
            queue=r["queue"],
            function=r["function"],
            started=int(r["started"]),
            first_started=int(r["first_started"]),
            succeeded=int(r["succeeded"]),
            retried=int(r["retried"]),
            dead=int(r["dead"]),
            duration_le=[int(r[f"duration_le_{i}"] or 0) for i in range(1, len(BUCKETS_S) + 1)],
            duration_sum_s=float(r["duration_sum_s"]),
            wait_le=[int(r[f"wait_le_{i}"] or 0) for i in range(1, len(BUCKETS_S) + 1)],
            wait_sum_s=float(r["wait_sum_s"]),
        )
    return found


def added_totals(a: dict[tuple[str, str], Totals], b: dict[tuple[str, str], Totals]) -> dict[tuple[str, str], Totals]:
    """Both sets of counters added up, key by key."""
    summed = dict(a)
    for key, t in b.items():
        s = summed.get(key)
        summed[key] = (
            t
            if s is None
            else Totals(
                queue=t.queue,
                function=t.function,
                started=s.started + t.started,
                first_started=s.first_started + t.first_started,
                succeeded=s.succeeded + t.succeeded,
                retried=s.retried + t.retried,
                dead=s.dead + t.dead,
                duration_le=[x + y for x, y in zip(s.duration_le, t.duration_le, strict=True)],
                duration_sum_s=s.duration_sum_s + t.duration_sum_s,
                wait_le=[x + y for x, y in zip(s.wait_le, t.wait_le, strict=True)],
                wait_sum_s=s.wait_sum_s + t.wait_sum_s,
            )
        )
    return summed


async def fold_stats_before(conn: Executor, cutoff: datetime) -> int:
    """Retention for the stats: minutes before `cutoff` are added into each series' row at the epoch and
    deleted, so totals stay whole while the table stays small. Returns the rows folded."""
    folded = await conn.fetchval(
        """WITH old AS (
               DELETE FROM millrace_stats WHERE minute < $1 AND minute > 'epoch'::timestamptz
               RETURNING *),
           merged AS (
               SELECT queue, function, sum(started) AS started, sum(first_started) AS first_started,
                      sum(succeeded) AS succeeded,
                      sum(retried) AS retried, sum(dead) AS dead, sum(wait_sum_s) AS wait_sum_s,
                      sum(duration_sum_s) AS duration_sum_s, count(*) AS n,
                      ARRAY(SELECT sum(x)::bigint FROM old o2, unnest(o2.wait_le) WITH ORDINALITY t(x, i)
                            WHERE o2.queue = old.queue AND o2.function = old.function GROUP BY i ORDER BY i)
                          AS wait_le,
                      ARRAY(SELECT sum(x)::bigint FROM old o2, unnest(o2.duration_le) WITH ORDINALITY t(x, i)
                            WHERE o2.queue = old.queue AND o2.function = old.function GROUP BY i ORDER BY i)
                          AS duration_le
               FROM old GROUP BY queue, function),
           base AS (
               INSERT INTO millrace_stats AS s (queue, function, minute, started, first_started, wait_le,
                                                wait_sum_s, succeeded, retried, dead, duration_le, duration_sum_s)
               SELECT queue, function, 'epoch'::timestamptz, started, first_started, wait_le, wait_sum_s,
                      succeeded, retried, dead, duration_le, duration_sum_s
               FROM merged ORDER BY queue, function
               ON CONFLICT (queue, function, minute) DO UPDATE SET
                   started = s.started + EXCLUDED.started, first_started = s.first_started + EXCLUDED.first_started,
                   succeeded = s.succeeded + EXCLUDED.succeeded,
                   retried = s.retried + EXCLUDED.retried, dead = s.dead + EXCLUDED.dead,
                   wait_sum_s = s.wait_sum_s + EXCLUDED.wait_sum_s,
                   duration_sum_s = s.duration_sum_s + EXCLUDED.duration_sum_s,
                   wait_le = ARRAY(SELECT x + y FROM unnest(s.wait_le, EXCLUDED.wait_le)
                                   WITH ORDINALITY AS t(x, y, i) ORDER BY i),
                   duration_le = ARRAY(SELECT x + y FROM unnest(s.duration_le, EXCLUDED.duration_le)
                                       WITH ORDINALITY AS t(x, y, i) ORDER BY i))
           SELECT coalesce(sum(n), 0) FROM merged""",
        cutoff,
    )
    return int(folded)


# -- workers


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerFigures:
    id: str
    queue: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age_s: float
    stopped_at: datetime | None
    stop_reason: str | None
    running: int
    jobs_done: int
    live: bool
    #: live by the rules, but its last beat is late (more than two of its intervals)
    late: bool


async def list_workers(conn: Executor, *, include_stopped_since: datetime) -> list[WorkerFigures]:
    rows = await conn.fetch(
        f"""SELECT w.id, w.queue, w.host, w.pid, w.version, w.started_at, w.heartbeat_at,
                   extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age_s, w.stopped_at,
                   w.stop_reason, w.running, w.jobs_done, {LIVE_WORKER_SQL} AS live,
                   w.heartbeat_at < now() - make_interval(secs => 2 * w.heartbeat_interval_s) AS late
            FROM millrace_workers w
            WHERE w.stopped_at IS NULL OR w.stopped_at > $1
            ORDER BY w.stopped_at IS NOT NULL, w.queue, w.started_at DESC
            LIMIT 500""",
        include_stopped_since,
    )
    return [WorkerFigures(**dict(r)) for r in rows]


# -- jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFilter:
    queue: str | None = None
    function: str | None = None
    status: str | None = None
    error_type: str | None = None
    fingerprint: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: a job id, a job key, or `field=value` found in the arguments
    search: str | None = None

    def where(self, first_parameter: int) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters, numbered from `first_parameter`."""
        conditions: list[str] = []
        values: list[Any] = []

        def add(sql: str, value: Any) -> None:
            values.append(value)
            conditions.append(sql.replace("?", f"${first_parameter + len(values) - 1}"))

        for column in ("queue", "function", "status"):
            if getattr(self, column) is not None:
                add(f"{column} = ?", getattr(self, column))
        if self.error_type is not None:
            add("last_error_type = ?", self.error_type)
        if self.fingerprint is not None:
            add("last_fingerprint = ?", self.fingerprint)
        if self.since is not None:
            add("enqueued_at >= ?", self.since)
        if self.until is not None:
            add("enqueued_at < ?", self.until)
        if self.search:
            name, equals, value = self.search.partition("=")
            if equals and name.strip():
                add("args @> ?::jsonb", {name.strip(): _typed(value.strip())})
            else:
                add("(id = ? OR job_key = ?)", self.search)
        return (" AND ".join(conditions) or "true"), values


def _typed(value: str) -> Any:
    """`user_id=42` looks for the number 42 and `email=a@b` for the text: the arguments are JSON."""
    if re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    if value in ("true", "false"):
        return value == "true"
    return value


async def find_jobs(
    conn: Executor, where: JobFilter, *, limit: int, before: tuple[datetime, str] | None = None
) -> list[JobRecord]:
    """A page of jobs, newest first; `before` (enqueued_at, id) of the last row shown gives the next."""
    condition, values = where.where(1)
    keyset = ""
    if before is not None:
        n = len(values)
        keyset = f" AND (enqueued_at, id) < (${n + 1}, ${n + 2})"
        values += [before[0], before[1]]
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM millrace_jobs WHERE {condition}{keyset}
            ORDER BY enqueued_at DESC, id DESC LIMIT ${len(values) + 1}""",
        *values,
        limit,
    )
    return [job_from_row(r) for r in rows]


async def count_jobs(conn: Executor, where: JobFilter, *, at_most: int) -> int:
    """How many jobs match, counted up to `at_most` (a bulk action says its total; counting never scans)."""
    condition, values = where.where(1)
    n = await conn.fetchval(
        f"SELECT count(*) FROM (SELECT 1 FROM millrace_jobs WHERE {condition} LIMIT ${len(values) + 1}) s",
        *values,
        at_most,
    )
    return int(n)


async def ids_of_jobs(conn: Executor, where: JobFilter, *, after_id: str, limit: int) -> list[str]:
    """One keyset page of matching ids, in id order: what a bulk action works through."""
    condition, values = where.where(1)
    rows = await conn.fetch(
        f"""SELECT id FROM millrace_jobs WHERE {condition} AND id > ${len(values) + 1}
            ORDER BY id LIMIT ${len(values) + 2}""",
        *values,
        after_id,
        limit,
    )
    return [r["id"] for r in rows]


# -- error groups


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorGroup:
    fingerprint: str
    function: str
    error_type: str
    example_message: str | None
    failures_hour: int
    failures_day: int
    first_seen: datetime
    last_seen: datetime
    dead_now: int
    example_job_ids: list[str]


async def error_groups(conn: Executor, *, now: datetime, days: int = 7, limit: int = 100) -> list[ErrorGroup]:
    """Failed attempts of the last `days`, grouped by fingerprint, the most recent first."""
    rows = await conn.fetch(
        """WITH failed AS (
               SELECT a.job_id, a.finished_at, a.error_type, a.error_message,
                      coalesce(a.fingerprint, md5(j.function || ':' || coalesce(a.error_type, '?'))) AS fingerprint,
                      j.function
               FROM millrace_job_attempts a JOIN millrace_jobs j ON j.id = a.job_id
               WHERE a.outcome IN ('retrying', 'dead', 'lost')
                 AND a.finished_at >= $1::timestamptz - make_interval(days => $2))
           SELECT fingerprint, min(function) AS function, min(error_type) AS error_type,
                  (array_agg(error_message ORDER BY finished_at DESC))[1] AS example_message,
                  count(*) FILTER (WHERE finished_at >= $1 - interval '1 hour') AS failures_hour,
                  count(*) FILTER (WHERE finished_at >= $1 - interval '1 day') AS failures_day,
                  min(finished_at) AS first_seen, max(finished_at) AS last_seen,
                  (array_agg(DISTINCT job_id))[1:5] AS example_job_ids
           FROM failed GROUP BY fingerprint ORDER BY max(finished_at) DESC LIMIT $3""",
        now,
        days,
        limit,
    )
    dead = await conn.fetch(
        """SELECT last_fingerprint AS fingerprint, count(*) AS n FROM millrace_jobs
           WHERE status = 'dead' AND last_fingerprint = ANY($1::text[]) GROUP BY last_fingerprint""",
        [r["fingerprint"] for r in rows],
    )
    dead_by = {r["fingerprint"]: r["n"] for r in dead}
    return [
        ErrorGroup(
            fingerprint=r["fingerprint"],
            function=r["function"],
            error_type=r["error_type"] or "?",
            example_message=r["example_message"],
            failures_hour=r["failures_hour"],
            failures_day=r["failures_day"],
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            dead_now=dead_by.get(r["fingerprint"], 0),
            example_job_ids=list(r["example_job_ids"]),
        )
        for r in rows
    ]


# -- stuck jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckJob:
    job: JobRecord
    reason: str


async def stuck_jobs(conn: Executor, timeouts_s: dict[str, float], *, limit: int = 200) -> list[StuckJob]:
    """Jobs in progress past their queue's timeout, or on a worker that is no longer live."""
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS},
                   extract(epoch FROM now() - started_at)::float8 AS running_s,
                   NOT EXISTS (SELECT 1 FROM millrace_workers w WHERE w.id = j.worker AND {LIVE_WORKER_SQL})
                       AS worker_gone
            FROM millrace_jobs j WHERE status = 'in_progress' ORDER BY started_at LIMIT $1""",
        limit * 10,
    )
    stuck: list[StuckJob] = []
    for row in rows:
        timeout_s = timeouts_s.get(row["queue"])
        if row["worker_gone"]:
            reason = f"its worker {row['worker']} is not live: the reaper hands it on at its next beat"
        elif timeout_s is not None and row["running_s"] is not None and row["running_s"] > timeout_s:
            reason = f"running {row['running_s']:.0f} s, past its queue's timeout of {timeout_s:.0f} s"
        else:
            continue
        columns = {k: v for k, v in dict(row).items() if k not in ("running_s", "worker_gone")}
        stuck.append(StuckJob(job=job_from_row(columns), reason=reason))
        if len(stuck) >= limit:
            break
    return stuck


# -- cron ledger


async def cron_ticks(conn: Executor, name: str, since: datetime) -> list[tuple[datetime, str, str | None]]:
    """Each tick that ran since `since`: when it was due, its job id and that job's status."""
    rows = await conn.fetch(
        """SELECT t.tick_at, t.job_id, j.status FROM millrace_cron_ticks t
           LEFT JOIN millrace_jobs j ON j.id = t.job_id
           WHERE t.name = $1 AND t.tick_at >= $2 ORDER BY t.tick_at""",
        name,
        since,
    )
    return [(r["tick_at"], r["job_id"], r["status"]) for r in rows]


# -- reconciliation


async def pending_sample(conn: Executor, queue: str, *, older_than: datetime, limit: int) -> list[tuple[str, int]]:
    """Pending jobs of `queue` due before `older_than`: (record id, attempt base), to look for in Redis."""
    rows = await conn.fetch(
        """SELECT id, attempt_base FROM millrace_jobs
           WHERE queue = $1 AND status IN ('queued', 'retrying', 'deferred') AND updated_at < $2
             AND id NOT LIKE 'cron:%' ORDER BY updated_at LIMIT $3""",
        queue,
        older_than,
        limit,
    )
    return [(r["id"], r["attempt_base"]) for r in rows]


async def known_ids(conn: Executor, record_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch("SELECT id FROM millrace_jobs WHERE id = ANY($1::text[])", list(record_ids))
    return {r["id"] for r in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxFigures:
    queue: str
    entries: int
    oldest_age_s: float | None


async def outbox_figures(conn: Executor) -> list[OutboxFigures]:
    rows = await conn.fetch(
        """SELECT queue, count(*) AS entries, extract(epoch FROM now() - min(enqueued_at))::float8 AS oldest_age_s
           FROM millrace_outbox GROUP BY queue ORDER BY queue"""
    )
    return [OutboxFigures(**dict(r)) for r in rows]


# -- audit log


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    affected: int
    details: dict[str, Any]


async def add_audit(
    conn: Executor, *, actor: str, action: str, target: str, affected: int = 0, details: dict[str, Any] | None = None
) -> int:
    entry_id = await conn.fetchval(
        """INSERT INTO millrace_audit_log (actor, action, target, affected, details)
           VALUES ($1, $2, $3, $4, $5) RETURNING id""",
        actor,
        action,
        target,
        affected,
        details or {},
    )
    return int(entry_id)


async def set_audit_affected(conn: Executor, entry_id: int, affected: int, details: dict[str, Any]) -> None:
    await conn.execute(
        "UPDATE millrace_audit_log SET affected = $2, details = details || $3 WHERE id = $1",
        entry_id,
        affected,
        details,
    )


async def audit_log(conn: Executor, *, limit: int = 200) -> list[AuditEntry]:
    rows = await conn.fetch(
        "SELECT id, at, actor, action, target, affected, details FROM millrace_audit_log ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [AuditEntry(**dict(r)) for r in rows]


async def pending_by_function(conn: Executor) -> dict[tuple[str, str], int]:
    """Jobs not yet started, by queue and function (with the first starts, what was enqueued)."""
    rows = await conn.fetch(
        """SELECT queue, function, count(*) AS n FROM millrace_jobs
           WHERE status IN ('queued', 'deferred') AND attempts = 0 GROUP BY queue, function"""
    )
    return {(r["queue"], r["function"]): r["n"] for r in rows}


async def live_workers(conn: Executor) -> dict[str, int]:
    rows = await conn.fetch(
        f"SELECT w.queue, count(*) AS n FROM millrace_workers w WHERE {LIVE_WORKER_SQL} GROUP BY w.queue"
    )
    return {r["queue"]: r["n"] for r in rows}
