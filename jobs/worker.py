"""The arq entry points: one WorkerSettings class per queue, run as `arq jobs.worker.EmailsWorker`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import queues
from db.pool import Pool
from jobs import emails, maintenance
from jobs.services import Services, open_services
from millrace.declare import collect
from millrace.worker import WorkerConfig, worker_settings
from settings import Settings


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        redis_url=str(settings.redis_url),
        database_url=str(settings.database_url),
        poll_delay_s=settings.poll_delay_s,
        keep_result_s=settings.keep_result_s,
        outbox_sweep_interval_s=settings.outbox_sweep_interval_s,
        database_pool_max_size=settings.database_pool_max_size,
        concurrency=settings.queue_concurrency,
        log_format=settings.log_format,
        log_level=settings.log_level,
    )


# The arq command imports this module and reads the classes below from it, so this module is the
# workers' entry point, and the one place they read Settings.
settings = Settings()
_jobs, _crons = collect([emails, maintenance])


def _services(pool: Pool) -> AbstractAsyncContextManager[Services]:
    return open_services(settings, pool)


EmailsWorker = worker_settings(
    queues.EMAILS, jobs=_jobs, crons=_crons, config=worker_config(settings), services=_services
)
MaintenanceWorker = worker_settings(
    queues.MAINTENANCE, jobs=_jobs, crons=_crons, config=worker_config(settings), services=_services
)
