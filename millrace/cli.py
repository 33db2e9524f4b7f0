"""The runtime's commands: migrate, status, jobs, dead letters, enqueue by name.

An application exposes them as its own command by handing over what only it knows: its database and
Redis, its registry of jobs and its migration series (see `run`). Bad input gets a message and exit
code 2; a database or Redis that cannot be reached gets a message and exit code 1; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import math
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from millrace import operations, store
from millrace.client import MAX_DELAY, JobClient
from millrace.declare import JobRef
from millrace.errors import InvalidJobArguments, NotFound, QueueFull
from millrace.outages import OUTAGES
from millrace.records import ALL_STATUSES, JobRecord
from millrace.store.insights import JobFilter
from millrace.store.migrate import MigrationSeries
from millrace.text import unstorable_text

MAX_LIMIT = 100_000
N = TypeVar("N", int, float)


@dataclass(frozen=True, slots=True, kw_only=True)
class Application:
    """What the runtime's commands need to know of an application."""

    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    #: every job reference, by name: what `enqueue NAME` may enqueue
    jobs: Mapping[str, JobRef[Any]]
    #: the application's own migration series, applied after the runtime's
    migrations: Sequence[MigrationSeries] = ()


Command = Callable[[Application, argparse.Namespace], Coroutine[Any, Any, int]]


class BadInput(Exception):
    """Input the command refuses: printed as it is, exit code 2."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


async def cmd_migrate(app: Application, _args: argparse.Namespace) -> int:
    conn = await store.pool.connect(app.database_url)
    try:
        applied = await store.migrate.apply_migrations(conn, app.migrations)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def cmd_status(app: Application, args: argparse.Namespace) -> int:
    conn = await store.pool.connect(app.database_url)
    try:
        statuses = await store.jobs.queue_statuses(conn)
        outbox = await store.outbox.count_entries(conn)
    finally:
        await conn.close()
    if args.json:
        _print_json({"queues": [asdict(s) for s in statuses], "outbox_pending": outbox})
        return 0
    print(f"{'queue':<14}" + "".join(f"{c:>12}" for c in ALL_STATUSES) + f"{'oldest wait':>14}")
    for s in statuses:
        oldest = "-" if s.oldest_waiting_s is None else f"{s.oldest_waiting_s:.1f}s"
        print(f"{s.queue:<14}" + "".join(f"{s.counts.get(c, 0):>12}" for c in ALL_STATUSES) + f"{oldest:>14}")
    print(f"outbox rows awaiting the relay: {outbox}")
    return 0


def _print_jobs(jobs: Sequence[JobRecord]) -> None:
    for j in jobs:
        error = f"  {j.last_error_type}: {(j.last_error or '')[:60]}" if j.last_error_type else ""
        print(f"{j.id:<34} {j.queue:<12} {j.function:<28} {j.status:<12} tries={j.attempts}{error}")


async def _list(app: Application, args: argparse.Namespace, status: str | None) -> list[JobRecord]:
    conn = await store.pool.connect(app.database_url)
    try:
        return await store.jobs.list_jobs(
            conn,
            status=status,
            queue=getattr(args, "queue", None),
            function=args.function,
            error_type=getattr(args, "error_type", None),
            limit=args.limit,
        )
    finally:
        await conn.close()


async def cmd_jobs_list(app: Application, args: argparse.Namespace) -> int:
    jobs = await _list(app, args, args.status)
    _print_json([asdict(j) for j in jobs]) if args.json else _print_jobs(jobs)
    return 0


async def cmd_jobs_show(app: Application, args: argparse.Namespace) -> int:
    conn = await store.pool.connect(app.database_url)
    try:
        job = await store.jobs.get_job(conn, args.id)
        attempts = await store.jobs.list_attempts(conn, args.id)
    except NotFound as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        await conn.close()
    if args.json:
        _print_json({**asdict(job), "attempt_history": [asdict(a) for a in attempts]})
        return 0
    for key, value in asdict(job).items():
        print(f"{key:>16}: {value}")
    for a in attempts:
        took = "" if a.duration_ms is None else f" {a.duration_ms:.1f}ms"
        at = "an unknown time" if a.started_at is None else f"{a.started_at:%Y-%m-%d %H:%M:%S}"
        print(f"  attempt {a.attempt}: {a.outcome or 'running'}{took} on {a.worker or 'an unknown worker'} at {at}")
        if a.error_type:
            print(f"    {a.error_type}: {a.error_message}")
    return 0


async def cmd_jobs_cancel(app: Application, args: argparse.Namespace) -> int:
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        outcome = await operations.cancel(client, args.id, actor=_actor())
    messages = {
        "cancelled": "cancelled",
        "running": "not cancelled: a worker is running it",
        "not_pending": "not cancelled: no pending job with this id",
    }
    print(f"{args.id}: {messages[outcome]}", file=sys.stdout if outcome == "cancelled" else sys.stderr)
    return 0 if outcome == "cancelled" else 1


async def cmd_jobs_abort(app: Application, args: argparse.Namespace) -> int:
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        outcome = await operations.abort(client, args.id, actor=_actor())
    messages = {
        "aborting": "abort asked for: its worker cancels it at its next heartbeat",
        "cancelled": "it had not started: cancelled",
        "not_pending": "not aborted: no running or pending job with this id",
    }
    print(f"{args.id}: {messages[outcome]}", file=sys.stderr if outcome == "not_pending" else sys.stdout)
    return 1 if outcome == "not_pending" else 0


async def cmd_dead_list(app: Application, args: argparse.Namespace) -> int:
    jobs = await _list(app, args, "dead")
    _print_json([asdict(j) for j in jobs]) if args.json else _print_jobs(jobs)
    return 0


async def cmd_dead_retry(app: Application, args: argparse.Namespace) -> int:
    if not args.ids and not (args.function or args.error_type or args.error_group or args.all):
        raise BadInput("name job ids, or select with --function / --error-type / --error-group / --all")
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        if not args.ids:
            where = JobFilter(function=args.function, error_type=args.error_type, fingerprint=args.error_group)
            result = await operations.retry_dead(client, where, actor=_actor(), progress=_progress_bar("retried"))
            print(f"requeued {result.done} dead job(s) of {result.matched} matching")
            return 0
        retried = await client.retry_dead(list(args.ids))
        async with client.pool.acquire() as conn:
            await store.insights.add_audit(
                conn,
                actor=_actor(),
                action="retry_dead",
                target=", ".join(args.ids)[:1000],
                affected=len(retried.requeued),
            )
    print(f"requeued {len(retried.requeued)} dead job(s), {retried.delivered} delivered to Redis")
    missing = set(args.ids) - set(retried.requeued)
    if missing:
        print(f"not dead, or unknown: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


def _actor() -> str:
    """Who acts from the command line, as the audit log names them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def _progress_bar(verb: str) -> Callable[[int, int], None]:
    """A progress line on stderr for a bulk action (only on a terminal: logs stay clean)."""

    def show(done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        if total:
            filled = int(30 * done / total)
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {verb}", end="", file=sys.stderr)
        else:
            print(f"\r{done} {verb}", end="", file=sys.stderr)
        if total and done >= total:
            print(file=sys.stderr)

    return show


async def cmd_errors_list(app: Application, args: argparse.Namespace) -> int:
    conn = await store.pool.connect(app.database_url)
    try:
        groups = await store.insights.error_groups(conn, now=datetime.now(UTC), days=args.days)
    finally:
        await conn.close()
    if args.json:
        _print_json([asdict(g) for g in groups])
        return 0
    for g in groups:
        print(
            f"{g.fingerprint}  {g.function:<28} {g.error_type:<24} hour={g.failures_hour} day={g.failures_day}"
            f" dead={g.dead_now}  last={g.last_seen:%Y-%m-%d %H:%M:%S}"
        )
    return 0


async def cmd_queues(app: Application, args: argparse.Namespace) -> int:
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        if args.queues_command == "list":
            async with client.pool.acquire() as conn:
                paused = await store.queues.paused_queues(conn)
            for queue, (since, by) in sorted(paused.items()):
                print(f"{queue}: paused since {since:%Y-%m-%d %H:%M:%S} by {by}")
            if not paused:
                print("no queue is paused")
            return 0
        if args.queues_command == "pause":
            done = await operations.pause_queue(client, args.queue, actor=_actor())
            print(f"{args.queue}: {'paused' if done else 'was paused already'}")
        else:
            done = await operations.resume_queue(client, args.queue, actor=_actor())
            print(f"{args.queue}: {'resumed' if done else 'was not paused'}")
    return 0


async def cmd_purge(app: Application, args: argparse.Namespace) -> int:
    before = datetime.now(UTC) - timedelta(days=args.older_than_days)
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        result = await operations.purge_finished(client, before, actor=_actor(), progress=_progress_bar("deleted"))
        async with client.pool.acquire() as conn:
            folded = await store.insights.fold_stats_before(conn, before)
    print(
        f"deleted {result.done} finished record(s) older than {args.older_than_days} days; folded {folded} stats rows"
    )
    return 0


async def cmd_enqueue(app: Application, args: argparse.Namespace) -> int:
    ref = app.jobs.get(args.name)
    if ref is None:
        raise BadInput(f"no job named {args.name!r}; known: {', '.join(sorted(app.jobs))}")
    try:
        raw = json.loads(args.args)
    except (ValueError, RecursionError) as error:
        raise BadInput(f"--args is not JSON: {error}") from None
    job_args = ref.validate(raw)
    async with JobClient.open(redis_url=app.redis_url, database_url=app.database_url) as client:
        enqueued = await client.enqueue(ref, job_args, delay_s=args.delay, job_key=args.key, priority=args.priority)
    print(f"{enqueued.id} {'enqueued' if enqueued.created else 'already pending'} via {enqueued.via}")
    return 0


def text(value: str) -> str:
    """An argparse type for any text that reaches PostgreSQL: no NUL, no undecodable bytes."""
    problem = unstorable_text(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def bounded(parse: Callable[[str], N], low: N, high: N, kind: str) -> Callable[[str], N]:
    """An argparse type for a number within [low, high]: finite, and small enough to mean something."""

    def check(value: str) -> N:
        try:
            number = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {value!r}") from None
        if not (math.isfinite(number) and low <= number <= high):
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return number

    return check


limit = bounded(int, 1, MAX_LIMIT, "a whole number")
delay = bounded(float, 0.0, MAX_DELAY.total_seconds(), "a number of seconds")


def build_parser(prog: str = "millrace") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Millrace: queues, job records and dead letters.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    status = sub.add_parser("status", help="counts by status per queue, and the oldest waiting job")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)
    _add_jobs_commands(sub)
    _add_dead_commands(sub)
    _add_operations_commands(sub)
    enqueue = sub.add_parser("enqueue", help="enqueue a job by name")
    enqueue.add_argument("name", type=text)
    enqueue.add_argument("--args", default="{}", type=text, help="the job's arguments as JSON")
    enqueue.add_argument("--delay", type=delay, help="seconds before it may run")
    enqueue.add_argument("--key", type=text, help="job key: while a job with this key is pending, no second one")
    enqueue.add_argument(
        "--priority", type=int, default=0, help="seconds of head start over the queue's normal jobs (0 to 86400)"
    )
    enqueue.set_defaults(run=cmd_enqueue)
    return parser


def _add_jobs_commands(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="job records").add_subparsers(dest="jobs_command", required=True)
    listing = jobs.add_parser("list")
    listing.add_argument("--status", choices=ALL_STATUSES)
    listing.add_argument("--queue", type=text)
    listing.add_argument("--function", type=text)
    listing.add_argument("--limit", type=limit, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_jobs_list)
    show = jobs.add_parser("show")
    show.add_argument("id", type=text)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_jobs_show)
    cancel = jobs.add_parser("cancel", help="cancel a job that has not started")
    cancel.add_argument("id", type=text)
    cancel.set_defaults(run=cmd_jobs_cancel)
    abort = jobs.add_parser("abort", help="abort a running job (a pending one is cancelled)")
    abort.add_argument("id", type=text)
    abort.set_defaults(run=cmd_jobs_abort)


def _add_dead_commands(sub: Any) -> None:
    dead = sub.add_parser("dead", help="dead letters").add_subparsers(dest="dead_command", required=True)
    for name, run in (("list", cmd_dead_list), ("retry", cmd_dead_retry)):
        p = dead.add_parser(name)
        p.add_argument("--function", type=text)
        p.add_argument("--error-type", type=text)
        p.add_argument("--limit", type=limit, default=1000)
        p.set_defaults(run=run)
    dead.choices["list"].add_argument("--json", action="store_true")
    dead.choices["retry"].add_argument("ids", nargs="*", type=text)
    dead.choices["retry"].add_argument("--all", action="store_true", help="every dead job")
    dead.choices["retry"].add_argument("--error-group", type=text, help="an error group's fingerprint (errors list)")


def _add_operations_commands(sub: Any) -> None:
    errors = sub.add_parser("errors", help="error groups").add_subparsers(dest="errors_command", required=True)
    listing = errors.add_parser("list", help="failures grouped by fingerprint")
    listing.add_argument("--days", type=bounded(int, 1, 365, "a whole number"), default=7)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_errors_list)
    queues = sub.add_parser("queues", help="pause and resume queues").add_subparsers(
        dest="queues_command", required=True
    )
    queues.add_parser("list", help="the paused queues").set_defaults(run=cmd_queues)
    for name, help_text in (("pause", "workers finish what they hold and take nothing new"), ("resume", "")):
        command = queues.add_parser(name, help=help_text or None)
        command.add_argument("queue", type=text)
        command.set_defaults(run=cmd_queues)
    purge = sub.add_parser("purge", help="delete succeeded and cancelled records; dead letters stay")
    purge.add_argument("--older-than-days", type=bounded(int, 1, 36500, "a whole number"), required=True)
    purge.set_defaults(run=cmd_purge)


def run(
    argv: Sequence[str] | None,
    application: Callable[[], Application],
    *,
    prog: str = "millrace",
) -> int:
    """Parse `argv` and run the command; `application` is called only once the arguments are good."""
    args = build_parser(prog).parse_args(argv)
    command: Command = args.run
    try:
        return asyncio.run(command(application(), args))
    except (BadInput, InvalidJobArguments, ValueError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except QueueFull as error:
        print(f"{prog}: {error}; try again in {error.retry_after_s:g} s", file=sys.stderr)
        return 75  # EX_TEMPFAIL: the same command may succeed later
    except OUTAGES as error:
        # the error's type and message only: a DSN with its password must not reach the terminal's scrollback
        print(f"{prog}: cannot reach PostgreSQL or Redis ({type(error).__name__}: {error})", file=sys.stderr)
        return 1
