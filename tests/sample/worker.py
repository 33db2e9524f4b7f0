"""arq entry point of the sample application, for tests that start real `arq` processes."""

from __future__ import annotations

from millrace.declare import collect
from millrace.worker import WorkerConfig, worker_settings
from settings import Settings
from tests.sample import app

settings = Settings()  # the test hands DATABASE_URL and REDIS_URL to the process's environment
_jobs, _crons = collect([app])
_config = WorkerConfig(
    redis_url=str(settings.redis_url),
    database_url=str(settings.database_url),
    poll_delay_s=0.05,
    outbox_sweep_interval_s=0.5,
    log_format="json",
)
TestqWorker = worker_settings(app.TESTQ, jobs=_jobs, crons=_crons, config=_config, services=app.open_services)
NoCronWorker = worker_settings(app.TESTQ, jobs=_jobs, config=_config, services=app.open_services)
