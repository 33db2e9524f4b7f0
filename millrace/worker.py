"""One arq WorkerSettings class per queue, so that the real `arq` command runs Millrace workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar, cast

import arq
import structlog
from arq.connections import ArqRedis, RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine
from redis.asyncio import ConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from millrace import admission, clock, cron_catchup, execution, exits, payload, shutdown, store, wakeup
from millrace.analyser import ANALYSE_INTERVAL_S, TableAnalyser
from millrace.client import JobClient
from millrace.clock import CLOCK
from millrace.declare import CronDefinition, JobDefinition
from millrace.dropped import DroppedJobs
from millrace.errors import RedisWritesRefused
from millrace.liveness import Liveness
from millrace.logs import LogFormat, configure_logging
from millrace.outages import OUTAGES, UNREACHABLE, OutageParser, PatientRetry
from millrace.pause import QueuePause
from millrace.progress import ProgressWriter
from millrace.queues import Queue
from millrace.reconcile import Reconciler
from millrace.recorder import RecordWriter
from millrace.relay import OutboxRelay
from millrace.runtime import RUNTIME_KEY, InHand, RunningAttempt, WorkerRuntime, worker_name
from millrace.store.pool import Pool
from millrace.watchdog import Watchdog

S = TypeVar("S")
log = structlog.get_logger(__name__)

#: builds the application's services once per worker, from a JobClient on the worker's own pools
ServicesFactory = Callable[[JobClient], AbstractAsyncContextManager[S]]
_STACK_KEY = "millrace_exit_stack"
#: the longest pause between two tries of a Redis command while Redis is away
REDIS_RETRY_CAP_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What a worker needs from Settings; the entry point builds it, the runtime never reads Settings."""

    # kept out of repr: a URL may carry a password, and a config may end up in a log line or traceback
    redis_url: str = field(repr=False)
    database_url: str = field(repr=False)
    poll_delay_s: float = 0.1
    keep_result_s: int = 3600
    #: on SIGTERM a worker takes no new job and gives running ones this long to finish before it
    #: hands them back; the supervisor's own grace must exceed it by shutdown.ARQ_EXTRA_WAIT_S
    #: (Kubernetes' default 30 s covers the 25 s here)
    shutdown_grace_s: int = 25
    #: how often each worker records that it is alive; the reaper judges the others at the same pace
    heartbeat_interval_s: float = 2.0
    #: a worker silent this long is dead, and its jobs go to the others (sooner when its process is gone:
    #: PostgreSQL frees its session's lock, and two missed heartbeats are enough then)
    silent_after_s: float = 10.0
    #: a job that blocks the event loop this long ends its process (see watchdog); None turns it off
    event_loop_stall_s: float | None = 5.0
    #: how often one worker of the queue compares pending records with Redis and puts back what it lost
    reconcile_interval_s: float = 30.0
    #: a record unchanged for this long is a candidate: younger ones may still be on their way to Redis
    reconcile_quiet_s: float = 10.0
    outbox_sweep_interval_s: float = 1.0
    #: how often a worker looks for runtime tables that grew, and analyses them (see store.statistics)
    analyse_interval_s: float = ANALYSE_INTERVAL_S
    #: how often the progress jobs report is written to their records (one statement for all of them)
    progress_interval_s: float = 1.0
    database_pool_max_size: int = 10
    #: PostgreSQL ends any statement on the worker's pool that runs longer (the runtime's and the jobs'
    #: own; a job that needs longer raises it for its transaction with SET LOCAL); None: no bound
    database_statement_timeout_s: float | None = store.pool.DEFAULT_STATEMENT_TIMEOUT_S
    concurrency: dict[str, int] | None = None
    log_format: LogFormat = "console"
    log_level: str = "INFO"
    #: False leaves logging alone: tests capture structlog output and must keep their own configuration
    configure_logging: bool = True
    #: an idle worker waits this long for a producer's token before it reads its queue again
    #: (millrace.wakeup); 0 turns the wait off, and arq polls every `poll_delay_s` instead
    idle_wait_s: float = wakeup.IDLE_WAIT_S

    def concurrency_of(self, queue: Queue) -> int:
        return (self.concurrency or {}).get(queue.name, queue.concurrency)


def worker_settings(
    queue: Queue,
    *,
    jobs: Sequence[JobDefinition[S, Any]],
    crons: Sequence[CronDefinition[S]] = (),
    config: WorkerConfig,
    services: ServicesFactory[S],
) -> type:
    """Build the arq settings class for `queue` from the job and cron definitions that belong to it."""
    jobs = [j for j in jobs if j.ref.queue == queue]
    crons = [c for c in crons if c.queue == queue]
    functions = [
        arq.func(
            cast(WorkerCoroutine, execution.job_handler(j)),
            name=j.name,
            timeout=j.timeout_s + execution.ARQ_TIMEOUT_GRACE_S,
            max_tries=execution.ARQ_MAX_TRIES,
        )
        for j in jobs
    ]
    # every function gets a timeout: arq hands a dead worker's jobs on only after the longest one, plus 10 s
    functions.append(
        arq.func(
            cast(WorkerCoroutine, execution.handle_corrupt),
            name=payload.CORRUPT_FUNCTION,
            timeout=execution.CORRUPT_TIMEOUT_S + execution.ARQ_TIMEOUT_GRACE_S,
        )
    )
    cron_jobs = [_arq_cron(c) for c in crons]
    known = {f.name for f in functions} | {c.name for c in cron_jobs}

    pause = QueuePause()
    dropped = DroppedJobs(queue.name, pause)
    # arq's own rule: a started job's mark lives as long as the longest timeout of the class, plus 10 s
    timeouts = [f.timeout_s or 0 for f in functions] + [c.timeout_s or 0 for c in cron_jobs]
    in_progress_timeout_s = max(timeouts) + 10

    async def on_startup(ctx: dict[str, Any]) -> None:
        delay_s = _START_RETRY_FIRST_S
        while True:
            try:
                await _start_runtime(ctx, queue, config, services, crons, dropped, pause, in_progress_timeout_s)
                return
            except UNREACHABLE as error:
                # PostgreSQL (or Redis) went away while the worker started: undo what was opened and
                # wait, as a running worker waits out an outage, rather than end the process
                stack: AsyncExitStack | None = ctx.pop(_STACK_KEY, None)
                if stack is not None:
                    with contextlib.suppress(Exception):
                        await stack.aclose()
                log.warning("worker_start_waiting", error=repr(error), retry_in_s=delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _START_RETRY_CAP_S)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        stack: AsyncExitStack | None = ctx.pop(_STACK_KEY, None)
        if stack is not None:
            await stack.aclose()

    attributes: dict[str, Any] = {
        "__doc__": f"arq settings for the {queue.name!r} queue",
        "functions": functions,
        "cron_jobs": cron_jobs,
        "queue_name": queue.redis_key,
        "redis_settings": patient_redis_settings(config.redis_url),
        "max_jobs": config.concurrency_of(queue),
        "poll_delay": config.poll_delay_s,
        "keep_result": config.keep_result_s,
        # Millrace cuts the bodies at the grace (millrace.shutdown); arq's own cut must find nothing left
        "job_completion_wait": config.shutdown_grace_s + shutdown.ARQ_EXTRA_WAIT_S,
        "job_serializer": dropped.serializer(),
        "job_deserializer": payload.worker_loads(known),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "health_check_interval": 10,
        "timezone": UTC,  # cron schedules are read in UTC, whatever the machine's zone
        "log_results": False,
    }
    attributes["redis_pool"] = _arq_redis(config, queue, attributes)
    if config.idle_wait_s > 0:  # the read of the queue waits for a job: no poll to sleep between reads
        attributes["poll_delay"] = wakeup.LOOP_DELAY_S
    return type(queue.worker_class_name, (), attributes)


#: a worker that cannot start for an outage tries again after this long, doubling up to the cap
_START_RETRY_FIRST_S = 0.5
_START_RETRY_CAP_S = 5.0


def patient_redis_settings(redis_url: str) -> RedisSettings:
    """arq's connection, retrying every command with backoff for as long as Redis is away.

    arq's poll loop ends the worker on the first connection error; with these settings it waits
    instead, takes no job meanwhile, and goes on when Redis is back. Redis refusing writes it cannot
    persist (a full disk under its append-only file) is waited out the same way: nothing it refused was
    applied, so the command is safe to send again. `arq --check` reads the same URL.
    """
    return dataclasses.replace(
        RedisSettings.from_dsn(redis_url),
        retry=PatientRetry(ExponentialBackoff(cap=REDIS_RETRY_CAP_S, base=0.05), retries=-1),
        # OSError too: redis-py retries a refused connection only when told, and arq's loop would end on it
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError, RedisWritesRefused],
        retry_on_timeout=True,
        conn_retries=1_000_000,  # arq's start-up ping: a worker started while Redis is down waits for it
    )


def _arq_redis(config: WorkerConfig, queue: Queue, attributes: dict[str, Any]) -> ArqRedis:
    """arq's client for one worker class, built before any event loop runs (it connects when used): the
    URL's server (TLS and unix sockets included), the settings' retries and timeouts, and Redis's refusal
    of writes read as an outage (arq's own pool could not be given the parser that tells it apart)."""
    settings: RedisSettings = attributes["redis_settings"]
    pool = ConnectionPool.from_url(
        config.redis_url,
        socket_connect_timeout=settings.conn_timeout,
        retry=settings.retry,
        retry_on_timeout=settings.retry_on_timeout,
        retry_on_error=settings.retry_on_error,
        max_connections=settings.max_connections,
        parser_class=OutageParser,
        encoding="utf8",
    )
    serializers: dict[str, Any] = {
        "job_serializer": attributes["job_serializer"],
        "job_deserializer": attributes["job_deserializer"],
        "default_queue_name": queue.redis_key,
    }
    if config.idle_wait_s > 0:
        return wakeup.WakingRedis(pool, queue_key=queue.redis_key, idle_wait_s=config.idle_wait_s, **serializers)
    return ArqRedis(pool, **serializers)


def _arq_cron(definition: CronDefinition[Any]) -> CronJob:
    return arq.cron(
        cast(WorkerCoroutine, execution.cron_handler(definition)),
        name=cron_catchup.arq_cron_name(definition),
        **definition.schedule.arq_fields(),
        unique=True,
        timeout=definition.timeout_s + execution.ARQ_TIMEOUT_GRACE_S,
        max_tries=execution.ARQ_MAX_TRIES,
    )


async def _start_runtime(
    ctx: dict[str, Any],
    queue: Queue,
    config: WorkerConfig,
    services: ServicesFactory[S],
    crons: Sequence[CronDefinition[S]],
    dropped: DroppedJobs,
    pause: QueuePause,
    in_progress_timeout_s: float,
) -> None:
    # logging is set up here, not at import: the arq command configures stdlib logging after importing us
    if config.configure_logging:
        configure_logging(config.log_format, config.log_level)
    name = worker_name(queue)
    # first: from here on, however the process ends, its last line says why
    exits.report_exit(name, shutdown.SHUTDOWN_SIGNALS)
    stack = AsyncExitStack()
    ctx[_STACK_KEY] = stack
    await _read_redis_clock(stack, ctx["redis"])
    # the record writer and the progress writer each write one batch at a time, on a connection of their
    # own (of the pool's size) that never plans a sequential scan: their statements find every row by key,
    # and a plan cached while the tables were small must not scan them until the analyser's next pass
    pool = await store.pool.create_pool(
        config.database_url,
        max_size=max(config.database_pool_max_size - 2, 1),
        statement_timeout_s=config.database_statement_timeout_s,
    )
    stack.push_async_callback(pool.close)
    keyed_pool = await store.pool.create_pool(
        config.database_url,
        max_size=2,
        server_settings=store.pool.KEYED_STATEMENTS_ONLY,
        statement_timeout_s=config.database_statement_timeout_s,
    )
    stack.push_async_callback(keyed_pool.close)
    # The runtime's own Redis calls fail fast and are tried again later; only arq's loop waits out an outage.
    jobs = await stack.enter_async_context(JobClient.open(redis_url=config.redis_url, pool=pool))
    dropped.attach(pool, jobs.redis)
    stack.push_async_callback(dropped.close)
    running: dict[asyncio.Task[Any], RunningAttempt] = {}
    running_ids: set[str] = set()
    abortable: dict[str, asyncio.Task[Any]] = {}
    aborting: set[str] = set()
    in_hand = InHand()
    # before the first claim: the claim's plans need statistics of the history (store.statistics)
    analyser = TableAnalyser(pool, interval_s=config.analyse_interval_s)
    await analyser.start()
    stack.push_async_callback(analyser.close)
    records = RecordWriter(keyed_pool, in_hand=lambda: in_hand.count, max_in_hand=config.concurrency_of(queue))
    liveness = Liveness(
        dsn=config.database_url,
        redis=jobs.redis,
        worker_id=name,
        queue=queue.name,
        heartbeat_interval_s=config.heartbeat_interval_s,
        silent_after_s=config.silent_after_s,
        running=lambda: running_ids,
        jobs_done=lambda: records.finishes_written,
        in_progress_timeout_s=in_progress_timeout_s,
        claim_patience_s=admission.RATE_LIMIT_MAX_WAIT_S + execution.CLAIM_PATIENCE_S,
        pause=pause,
        abort=lambda job_ids: execution.abort_running(abortable, aborting, job_ids),
    )
    await liveness.start()
    # The stack unwinds backwards: the record writer writes the last hand-backs, then the worker is
    # recorded as stopped. The other way round, a reaper could take the jobs before they are handed back.
    stack.push_async_callback(liveness.close)
    records.start()
    stack.push_async_callback(records.close)
    progress = ProgressWriter(keyed_pool, interval_s=config.progress_interval_s)
    progress.start()
    stack.push_async_callback(progress.close)
    if config.event_loop_stall_s is not None:
        watchdog = Watchdog(dsn=config.database_url, worker_id=name, stall_s=config.event_loop_stall_s, running=running)
        watchdog.start()
        stack.callback(watchdog.stop)
    await _start_delivery(stack, config, queue, pool, jobs)
    app_services = await stack.enter_async_context(services(jobs))
    runtime = WorkerRuntime(
        queue=queue,
        worker_name=name,
        pool=pool,
        redis=ctx["redis"],
        records=records,
        progress=progress,
        jobs=jobs,
        services=app_services,
        recheck_held_s=config.silent_after_s,
        running=running,
        running_ids=running_ids,
        in_hand=in_hand,
        abortable=abortable,
        aborting=aborting,
        pause=pause,
    )
    ctx[RUNTIME_KEY] = runtime
    grace = shutdown.ShutdownGrace(
        grace_s=config.shutdown_grace_s, cut=lambda: execution.cut_for_shutdown(abortable, aborting)
    )
    if grace.install():
        stack.callback(grace.uninstall)
    if isinstance(ctx["redis"], wakeup.WakingRedis):
        ctx["redis"].busy = lambda: bool(running_ids)
    if crons:  # what the dashboard's cron ledger reads; a worker that cannot write it still runs
        try:
            await store.cron.declare_schedules(pool, [cron_catchup.declared(c) for c in crons])
        except OUTAGES as error:
            log.warning("cron_schedules_not_declared", error=repr(error))
    await cron_catchup.catch_up(runtime, crons, CLOCK.now())
    log.info("worker_started", queue=queue.name, worker=runtime.worker_name, concurrency=config.concurrency_of(queue))


async def _read_redis_clock(stack: AsyncExitStack, redis: ArqRedis) -> None:
    """arq's scores and cron ticks on Redis's clock, not this machine's (millrace.clock), from before arq's
    scheduler first reads it, and measured again as long as the worker runs."""
    clock.install_into_arq()
    try:
        await CLOCK.sync(redis)
    except OUTAGES as error:  # arq itself has just reached Redis: a blip; the next measurement comes soon
        log.warning("clock_sync_failed", error=repr(error))
    task = asyncio.create_task(CLOCK.keep_in_sync(redis), name="millrace-clock-sync")
    stack.callback(task.cancel)


async def _start_delivery(
    stack: AsyncExitStack, config: WorkerConfig, queue: Queue, pool: Pool, jobs: JobClient
) -> None:
    """The outbox relay and the reconciler: what PostgreSQL holds and Redis does not gets there."""
    relay = OutboxRelay(
        pool=pool,
        redis=jobs.redis,
        dsn=config.database_url,
        queues=[queue.name],
        sweep_interval_s=config.outbox_sweep_interval_s,
    )
    # what waited in the outbox while no worker of this queue ran is delivered before the first poll
    await relay.deliver_backlog()
    relay.start()
    stack.push_async_callback(relay.close)
    reconciler = Reconciler(
        pool=pool,
        redis=jobs.redis,
        queue=queue.name,
        interval_s=config.reconcile_interval_s,
        quiet_for_s=config.reconcile_quiet_s,
    )
    reconciler.start()
    stack.push_async_callback(reconciler.close)
