"""One arq WorkerSettings class per queue, so that the real `arq` command runs Millrace workers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import arq
import structlog
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from millrace import cron_catchup, execution, payload, store
from millrace.client import JobClient
from millrace.declare import CronDefinition, JobDefinition
from millrace.dropped import DroppedJobs
from millrace.logs import LogFormat, configure_logging
from millrace.queues import Queue
from millrace.reconcile import Reconciler
from millrace.recorder import RecordWriter
from millrace.relay import OutboxRelay
from millrace.runtime import RUNTIME_KEY, WorkerRuntime, worker_name

S = TypeVar("S")
log = structlog.get_logger(__name__)

#: builds the application's services once per worker, from a JobClient on the worker's own pools
ServicesFactory = Callable[[JobClient], AbstractAsyncContextManager[S]]
_STACK_KEY = "millrace_exit_stack"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    """What a worker needs from Settings; the entry point builds it, the runtime never reads Settings."""

    # kept out of repr: a URL may carry a password, and a config may end up in a log line or traceback
    redis_url: str = field(repr=False)
    database_url: str = field(repr=False)
    poll_delay_s: float = 0.1
    keep_result_s: int = 3600
    #: on SIGTERM a worker takes no new job and gives running ones this long to finish before it
    #: cancels them; keep it under the supervisor's own grace (Kubernetes: 30 s by default)
    shutdown_grace_s: int = 25
    #: how often one worker of the queue compares pending records with Redis and puts back what it lost
    reconcile_interval_s: float = 30.0
    #: a record unchanged for this long is a candidate: younger ones may still be on their way to Redis
    reconcile_quiet_s: float = 10.0
    outbox_sweep_interval_s: float = 1.0
    database_pool_max_size: int = 10
    concurrency: dict[str, int] | None = None
    log_format: LogFormat = "console"
    log_level: str = "INFO"
    #: False leaves logging alone: tests capture structlog output and must keep their own configuration
    configure_logging: bool = True

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

    dropped = DroppedJobs(queue.name)

    async def on_startup(ctx: dict[str, Any]) -> None:
        await _start_runtime(ctx, queue, config, services, crons, dropped)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        stack: AsyncExitStack | None = ctx.pop(_STACK_KEY, None)
        if stack is not None:
            await stack.aclose()

    attributes: dict[str, Any] = {
        "__doc__": f"arq settings for the {queue.name!r} queue",
        "functions": functions,
        "cron_jobs": cron_jobs,
        "queue_name": queue.redis_key,
        "redis_settings": RedisSettings.from_dsn(config.redis_url),
        "max_jobs": config.concurrency_of(queue),
        "poll_delay": config.poll_delay_s,
        "keep_result": config.keep_result_s,
        "job_completion_wait": config.shutdown_grace_s,
        "job_serializer": dropped.serializer(),
        "job_deserializer": payload.worker_loads(known),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "health_check_interval": 10,
        "timezone": UTC,  # cron schedules are read in UTC, whatever the machine's zone
        "log_results": False,
    }
    return type(queue.worker_class_name, (), attributes)


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
) -> None:
    # logging is set up here, not at import: the arq command configures stdlib logging after importing us
    if config.configure_logging:
        configure_logging(config.log_format, config.log_level)
    stack = AsyncExitStack()
    ctx[_STACK_KEY] = stack
    pool = await store.pool.create_pool(config.database_url, max_size=config.database_pool_max_size)
    stack.push_async_callback(pool.close)
    dropped.attach(pool)
    stack.push_async_callback(dropped.close)
    records = RecordWriter(pool)
    records.start()
    stack.push_async_callback(records.close)
    relay = OutboxRelay(
        pool=pool,
        redis=ctx["redis"],
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
        redis=ctx["redis"],
        queue=queue.name,
        interval_s=config.reconcile_interval_s,
        quiet_for_s=config.reconcile_quiet_s,
    )
    reconciler.start()
    stack.push_async_callback(reconciler.close)
    jobs = JobClient(redis=ctx["redis"], pool=pool)
    app_services = await stack.enter_async_context(services(jobs))
    runtime = WorkerRuntime(
        queue=queue,
        worker_name=worker_name(queue),
        pool=pool,
        redis=ctx["redis"],
        records=records,
        jobs=jobs,
        services=app_services,
    )
    ctx[RUNTIME_KEY] = runtime
    await cron_catchup.catch_up(runtime, crons, datetime.now(UTC))
    log.info("worker_started", queue=queue.name, worker=runtime.worker_name, concurrency=config.concurrency_of(queue))
