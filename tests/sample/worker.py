"""arq entry point of the sample application, for tests that start real `arq` processes.

An entry point reads its own environment; the test hands DATABASE_URL and REDIS_URL to the process.
"""

from __future__ import annotations

import dataclasses
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
    shutdown_grace_s=int(os.environ.get("SHUTDOWN_GRACE_S", "25")),
    heartbeat_interval_s=0.5,
    silent_after_s=3.0,
    event_loop_stall_s=2.0,
    log_format="json",
)
#: the shipped heartbeat, silence and watchdog settings, for tests of the promised hand-on times
_shipped = WorkerConfig(redis_url="", database_url="")
_shipped_timing = dataclasses.replace(
    _config,
    heartbeat_interval_s=_shipped.heartbeat_interval_s,
    silent_after_s=_shipped.silent_after_s,
    event_loop_stall_s=_shipped.event_loop_stall_s,
)
TestqWorker = worker_settings(app.TESTQ, jobs=_jobs, crons=_crons, config=_config, services=app.open_services)
NoCronWorker = worker_settings(app.TESTQ, jobs=_jobs, config=_config, services=app.open_services)
ShippedTimingWorker = worker_settings(app.TESTQ, jobs=_jobs, config=_shipped_timing, services=app.open_services)
