"""arq entry point of the sample application, for tests that start real `arq` processes.

An entry point reads its own environment; the test hands DATABASE_URL and REDIS_URL to the process.
"""

from __future__ import annotations

import os

from millrace import WorkerConfig, collect, worker_settings
from tests.sample import app

_jobs, _crons = collect([app])
_config = WorkerConfig(
    redis_url=os.environ["REDIS_URL"],
    database_url=os.environ["DATABASE_URL"],
    poll_delay_s=0.05,
    outbox_sweep_interval_s=0.5,
    reconcile_interval_s=1.0,
    reconcile_quiet_s=1.0,
    log_format="json",
)
TestqWorker = worker_settings(app.TESTQ, jobs=_jobs, crons=_crons, config=_config, services=app.open_services)
NoCronWorker = worker_settings(app.TESTQ, jobs=_jobs, config=_config, services=app.open_services)
