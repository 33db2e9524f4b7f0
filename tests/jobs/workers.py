"""In-process arq workers of the real application, for job tests."""

from __future__ import annotations

import asyncio
from typing import Any

import arq.worker

from jobs import worker as app_worker
from millrace.declare import collect
from millrace.queues import Queue
from millrace.worker import WorkerConfig, worker_settings
from settings import Settings


async def run_app_workers(settings: Settings, queue: Queue, *, copies: int = 1, **worker_options: Any) -> None:
    """Run `copies` workers of `queue` side by side, in burst mode, until the queue is empty."""
    jobs, _ = collect(app_worker.JOB_MODULES)
    config = WorkerConfig(
        redis_url=settings.redis_dsn(),
        database_url=settings.database_dsn(),
        configure_logging=False,
        poll_delay_s=0.01,
        event_loop_stall_s=None,  # in-process: the watchdog would end pytest itself
        # burst workers end when a read finds the queue empty: a read that waits for a token would
        # only delay that; the copies share one settings class, so they would share one client too
        idle_wait_s=0,
    )
    # the services the real worker classes open, with the start-up check of the programs the queue's jobs run
    worker_class = worker_settings(queue, jobs=jobs, config=config, services=app_worker.services_for(settings, queue))
    workers = [
        arq.worker.create_worker(worker_class, burst=True, handle_signals=False, **worker_options)
        for _ in range(copies)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(w.main() for w in workers)), timeout=60)
    finally:
        for worker in workers:
            await worker.close()
