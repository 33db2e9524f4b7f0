"""Secrets never reach a log line, a repr or the terminal: DSN passwords above all."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest
import structlog

from millrace import WorkerConfig, configure_logging
from settings import Settings
from tests.cli_run import ROOT

PASSWORD = "hunter2-very-secret"
DSN = f"postgresql://app:{PASSWORD}@127.0.0.1:1/db"


def test_settings_and_worker_config_hide_connection_urls() -> None:
    settings = Settings(database_url=DSN, redis_url=f"redis://:{PASSWORD}@127.0.0.1:1/0")
    config = WorkerConfig(redis_url=settings.redis_dsn(), database_url=settings.database_dsn())
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in repr(config)
    assert PASSWORD in settings.database_dsn()  # still there for whoever needs it


def test_a_bad_url_is_named_in_the_error_but_not_echoed() -> None:
    with pytest.raises(ValueError, match="database_url") as refused:
        Settings(database_url=f"mysql://app:{PASSWORD}@host/db")
    assert PASSWORD not in str(refused.value)


def test_console_tracebacks_do_not_print_locals() -> None:
    stream = io.StringIO()
    configure_logging("console", "INFO")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        connect_to(DSN)
    except ConnectionError:
        structlog.get_logger("test").exception("connection_failed")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    assert "connection_failed" in stream.getvalue()
    assert PASSWORD not in stream.getvalue()


def connect_to(dsn: str) -> None:
    raise ConnectionError("refused")


def test_the_cli_reports_an_unreachable_database_without_its_password() -> None:
    env = {**os.environ, "DATABASE_URL": DSN, "REDIS_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "status"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "cannot reach PostgreSQL or Redis" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
