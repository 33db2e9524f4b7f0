"""The arq entry points: one WorkerSettings class per queue, run as `arq jobs.worker.EmailsWorker`."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import queues
from jobs import (
    documents,
    emails,
    imports,
    integrations,
    maintenance,
    notifications,
    payments,
    programs,
    quotations,
    reports,
    schedules,
)
from jobs.services import Services, open_services
from millrace import JobClient, Queue, ServicesFactory, WorkerConfig, collect, worker_settings
from settings import Settings


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        redis_url=settings.redis_dsn(),
        database_url=settings.database_dsn(),
        poll_delay_s=settings.poll_delay_s,
        keep_result_s=settings.keep_result_s,
        shutdown_grace_s=settings.shutdown_grace_s,
        reconcile_interval_s=settings.reconcile_interval_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        silent_after_s=settings.silent_after_s,
        event_loop_stall_s=settings.event_loop_stall_s,
        outbox_sweep_interval_s=settings.outbox_sweep_interval_s,
        database_pool_max_size=settings.database_pool_max_size,
        database_statement_timeout_s=settings.database_statement_timeout_s,
        concurrency=settings.queue_concurrency,
        log_format=settings.log_format,
        log_level=settings.log_level,
    )


# The arq command imports this module and reads the classes below from it, so this module is the
# workers' entry point, and the one place they read Settings.
settings = Settings()
JOB_MODULES = (
    documents,
    emails,
    imports,
    integrations,
    maintenance,
    notifications,
    payments,
    quotations,
    reports,
    schedules,
)
_jobs, _crons = collect(JOB_MODULES)


def services_for(settings: Settings, queue: Queue) -> ServicesFactory[Services]:
    """What a worker of `queue` opens as it starts: it names the programs its jobs run and this machine
    lacks (one warning line, jobs.programs), then opens the application's services."""
    needed = programs.needed_on(queue, JOB_MODULES)

    def open_for_queue(jobs: JobClient) -> AbstractAsyncContextManager[Services]:
        programs.warn_if_missing(settings, queue, needed)
        return open_services(settings, jobs)

    return open_for_queue


def _for(queue: Queue) -> type:
    services = services_for(settings, queue)
    return worker_settings(queue, jobs=_jobs, crons=_crons, config=worker_config(settings), services=services)


EmailsWorker = _for(queues.EMAILS)
WebhooksWorker = _for(queues.WEBHOOKS)
NotificationsWorker = _for(queues.NOTIFICATIONS)
IntegrationsWorker = _for(queues.INTEGRATIONS)
MaintenanceWorker = _for(queues.MAINTENANCE)
BulkWorker = _for(queues.BULK)
DocumentsWorker = _for(queues.DOCUMENTS)
AiWorker = _for(queues.AI)
