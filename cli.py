"""The `millrace` command: migrations, queue status, job records, dead letters, enqueue, demo load."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import db.jobs
import db.migrate
import db.outbox
import db.pool
from db.errors import NotFound
from millrace import relay
from millrace.client import JobClient
from millrace.errors import InvalidJobArguments
from millrace.logs import configure_logging
from producers.catalog import all_refs
from settings import Settings

Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v)))


async def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    conn = await db.pool.connect(str(settings.database_url))
    try:
        applied = await db.migrate.apply_migrations(conn)
    finally:
        await conn.close()
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    conn = await db.pool.connect(str(settings.database_url))
    try:
        statuses = await db.jobs.queue_statuses(conn)
        outbox = await db.outbox.count_entries(conn)
    finally:
        await conn.close()
    if args.json:
        _print_json({"queues": [asdict(s) for s in statuses], "outbox_pending": outbox})
        return 0
    columns = db.jobs.ALL_STATUSES
    print(f"{'queue':<14}" + "".join(f"{c:>12}" for c in columns) + f"{'oldest wait':>14}")
    for s in statuses:
        oldest = "-" if s.oldest_waiting_s is None else f"{s.oldest_waiting_s:.1f}s"
        print(f"{s.queue:<14}" + "".join(f"{s.counts.get(c, 0):>12}" for c in columns) + f"{oldest:>14}")
    print(f"outbox rows awaiting the relay: {outbox}")
    return 0


def _print_jobs(jobs: Sequence[db.jobs.JobRecord]) -> None:
    for j in jobs:
        error = f"  {j.last_error_type}: {(j.last_error or '')[:60]}" if j.last_error_type else ""
        print(f"{j.id:<34} {j.queue:<12} {j.function:<28} {j.status:<12} tries={j.attempts}{error}")


async def cmd_jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    conn = await db.pool.connect(str(settings.database_url))
    try:
        jobs = await db.jobs.list_jobs(
            conn, status=args.status, queue=args.queue, function=args.function, limit=args.limit
        )
    finally:
        await conn.close()
    _print_json([asdict(j) for j in jobs]) if args.json else _print_jobs(jobs)
    return 0


async def cmd_jobs_show(settings: Settings, args: argparse.Namespace) -> int:
    conn = await db.pool.connect(str(settings.database_url))
    try:
        job = await db.jobs.get_job(conn, args.id)
        attempts = await db.jobs.list_attempts(conn, args.id)
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
        print(
            f"  attempt {a.attempt}: {a.outcome or 'running'}{took} on {a.worker} at {a.started_at:%Y-%m-%d %H:%M:%S}"
        )
        if a.error_type:
            print(f"    {a.error_type}: {a.error_message}")
    return 0


async def cmd_jobs_cancel(settings: Settings, args: argparse.Namespace) -> int:
    async with JobClient.open(redis_url=str(settings.redis_url), database_url=str(settings.database_url)) as client:
        outcome = await client.cancel(args.id)
    messages = {
        "cancelled": "cancelled",
        "running": "not cancelled: a worker is running it",
        "not_pending": "not cancelled: no pending job with this id",
    }
    print(f"{args.id}: {messages[outcome]}", file=sys.stdout if outcome == "cancelled" else sys.stderr)
    return 0 if outcome == "cancelled" else 1


async def cmd_dead_list(settings: Settings, args: argparse.Namespace) -> int:
    conn = await db.pool.connect(str(settings.database_url))
    try:
        jobs = await db.jobs.list_jobs(
            conn, status="dead", function=args.function, error_type=args.error_type, limit=args.limit
        )
    finally:
        await conn.close()
    _print_json([asdict(j) for j in jobs]) if args.json else _print_jobs(jobs)
    return 0


async def cmd_dead_retry(settings: Settings, args: argparse.Namespace) -> int:
    if not args.ids and not (args.function or args.error_type or args.all):
        print("name job ids, or select with --function / --error-type / --all", file=sys.stderr)
        return 2
    async with JobClient.open(redis_url=str(settings.redis_url), database_url=str(settings.database_url)) as client:
        async with client.pool.acquire() as conn, conn.transaction():
            ids = list(args.ids)
            if not ids:
                dead = await db.jobs.list_jobs(
                    conn, status="dead", function=args.function, error_type=args.error_type, limit=args.limit
                )
                ids = [j.id for j in dead]
            requeued = await db.outbox.requeue_dead_jobs(conn, ids)
        # deliver now rather than wait for a worker's relay; if Redis is down, the workers' relays will
        delivered = await relay.deliver_all(client.pool, client.redis, sorted({e.queue for e in requeued}))
    print(f"requeued {len(requeued)} dead job(s), {delivered} delivered to Redis")
    missing = set(args.ids) - {e.job_id for e in requeued}
    if missing:
        print(f"not dead, or unknown: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    return 0


async def cmd_enqueue(settings: Settings, args: argparse.Namespace) -> int:
    ref = all_refs().get(args.name)
    if ref is None:
        print(f"no job named {args.name!r}; known: {', '.join(sorted(all_refs()))}", file=sys.stderr)
        return 2
    try:
        raw = json.loads(args.args)
    except ValueError as error:
        print(f"--args is not JSON: {error}", file=sys.stderr)
        return 2
    async with JobClient.open(redis_url=str(settings.redis_url), database_url=str(settings.database_url)) as client:
        try:
            enqueued = await client.enqueue(ref, raw, delay_s=args.delay, job_key=args.key)
        except InvalidJobArguments as error:
            print(error, file=sys.stderr)
            return 2
    print(f"{enqueued.id} {'enqueued' if enqueued.created else 'already pending'} via {enqueued.via}")
    return 0


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from web.demo_load import run_demo_load  # only this command needs httpx's client side

    return await run_demo_load(settings, count=args.count, interval_s=args.interval)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millrace", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    status = sub.add_parser("status", help="counts by status per queue, and the oldest waiting job")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cmd_status)

    jobs = sub.add_parser("jobs", help="job records").add_subparsers(dest="jobs_command", required=True)
    listing = jobs.add_parser("list")
    for flag in ("--status", "--queue", "--function"):
        listing.add_argument(flag)
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_jobs_list)
    show = jobs.add_parser("show")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_jobs_show)
    cancel = jobs.add_parser("cancel", help="cancel a job that has not started")
    cancel.add_argument("id")
    cancel.set_defaults(run=cmd_jobs_cancel)

    dead = sub.add_parser("dead", help="dead letters").add_subparsers(dest="dead_command", required=True)
    for name, run in (("list", cmd_dead_list), ("retry", cmd_dead_retry)):
        p = dead.add_parser(name)
        p.add_argument("--function")
        p.add_argument("--error-type")
        p.add_argument("--limit", type=int, default=1000)
        p.set_defaults(run=run)
    dead.choices["list"].add_argument("--json", action="store_true")
    dead.choices["retry"].add_argument("ids", nargs="*")
    dead.choices["retry"].add_argument("--all", action="store_true", help="every dead job")

    enqueue = sub.add_parser("enqueue", help="enqueue a job by name")
    enqueue.add_argument("name")
    enqueue.add_argument("--args", default="{}", help="the job's arguments as JSON")
    enqueue.add_argument("--delay", type=float, help="seconds before it may run")
    enqueue.add_argument("--key", help="job key: while a job with this key is pending, no second one")
    enqueue.set_defaults(run=cmd_enqueue)

    demo = sub.add_parser("demo", help="sign up demo users through the web app, so jobs flow")
    demo.add_argument("--count", type=int, default=20)
    demo.add_argument("--interval", type=float, default=1.0)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_format, "WARNING" if args.command != "demo" else settings.log_level)
    run: Command = args.run
    return asyncio.run(run(settings, args))


if __name__ == "__main__":
    sys.exit(main())
