"""The last line of a worker process: `worker_stopped` or `worker_crashed`, saying why it ends.

Installed first thing in a worker's start-up, in a process of its own only (one whose shutdown signals an
event loop handles: the `arq` command's, not a test's in-process worker). The ways a worker ends, and
where each is heard:

- SIGTERM or SIGINT (a deploy, Ctrl-C): arq lets running jobs finish and cancels its main task; the
  signal is noted on its way to arq's handler (chained, as millrace.shutdown does). Status 0.
- arq's main task raising (an error reply of Redis's that is no outage, an exception in on_startup such
  as a database that does not exist, a job task's error arq re-raises): arq closes the worker (on_shutdown runs)
  and the exception reaches the interpreter, whose excepthook is replaced here so that the traceback goes
  into the last line instead of bare stderr. Status 1. An error in on_shutdown or in arq's close ends
  the process the same way; the line then names the first error, which the later one would have masked.
- SystemExit raised inside the loop (a job or a library calling sys.exit): asyncio ends the loop with
  it, arq closes the worker, the process ends with its code.
- burst mode done, or the interpreter ending normally: status 0.
- the watchdog's os._exit (a blocked event loop): no exit hook runs, so the watchdog writes its own last
  line (`last_line`).
- terminating signals nobody handles (SIGHUP when a terminal closes, SIGUSR1, SIGUSR2, SIGALRM): noted
  here, then left to their default action, which ends the process at once.
- SIGKILL, the OOM killer, a crash of the interpreter itself (a C extension's segfault): nothing runs in
  the process, so nothing can be logged; the supervisor's record of the exit status and the reaper's
  hand-on of the worker's jobs (millrace.liveness) are the only traces.

The line is written at exit (atexit: after arq's close and on_shutdown, before logging's own shutdown)
and the handlers are flushed, so it is the last one the process writes.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

import structlog

log = structlog.get_logger(__name__)

#: terminating signals that a worker leaves at their default action: noted, then let through
_FATAL_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)


def last_line(event: str, *, level: int = logging.INFO, **values: Any) -> None:
    """Log the process's last line and flush it out: the process may end without another chance."""
    log.log(level, event, pid=os.getpid(), **values)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()


class ExitReport:
    """What is known of why this process ends, written as its last line at exit."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.signal: str | None = None
        self.main_error: BaseException | None = None
        self.uncaught: BaseException | None = None
        self.system_exit: SystemExit | None = None
        self.main_returned = False
        self._previous: dict[signal.Signals, Any] = {}

    def install(self, main_task: asyncio.Task[Any] | None, shutdown_signals: tuple[signal.Signals, ...]) -> None:
        self.watch(main_task)
        for signum in shutdown_signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_shutdown_signal)
        for signum in _FATAL_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, self._on_fatal_signal)
        sys.excepthook = self._excepthook
        atexit.register(self.write)

    def watch(self, main_task: asyncio.Task[Any] | None) -> None:
        """Hear how arq's main task (the one that runs on_startup) ends."""
        if main_task is not None:
            main_task.add_done_callback(self._main_ended)

    def _on_shutdown_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signal.Signals(signum).name
        previous = self._previous.get(signal.Signals(signum))
        if callable(previous):
            previous(signum, frame)

    def _on_fatal_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        last_line("worker_stopped", level=logging.WARNING, worker=self.worker, reason=name, exit_status=-signum)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _main_ended(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():  # arq's answer to a shutdown signal
            return
        error = task.exception()
        if isinstance(error, SystemExit):
            self.system_exit = error
        elif error is not None:
            self.main_error = error
        else:
            self.main_returned = True

    def _excepthook(self, kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        # no traceback printed here: the last line carries it (sys.__excepthook__ would print it twice)
        self.uncaught = error.with_traceback(tb)

    def write(self) -> None:
        crash = self.main_error or self.uncaught
        if crash is not None:
            exit_status = 130 if isinstance(self.uncaught, KeyboardInterrupt) else 1
            closing = self.uncaught if self.uncaught is not None and self.uncaught is not crash else None
            last_line(
                "worker_crashed",
                level=logging.CRITICAL,
                worker=self.worker,
                error=repr(crash),
                closing_error=repr(closing) if closing else None,
                signal=self.signal,
                exit_status=exit_status,
                exc_info=crash,
            )
        elif self.system_exit is not None:
            exit_status = _status(self.system_exit.code)
            level = logging.INFO if exit_status == 0 else logging.WARNING
            last_line("worker_stopped", level=level, worker=self.worker, reason="SystemExit", exit_status=exit_status)
        else:
            reason = self.signal or ("burst_done" if self.main_returned else "interpreter_exit")
            last_line("worker_stopped", worker=self.worker, reason=reason, exit_status=0)


def _status(code: object) -> int:
    """The exit status the interpreter gives a SystemExit's code."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


_report: list[ExitReport] = []  # one per process: the hooks it installs are the process's own


def report_exit(worker: str, shutdown_signals: tuple[signal.Signals, ...]) -> bool:
    """Write the last line when this process ends; False, and nothing done, where the worker does not own
    the process (a test's in-process worker: nobody handles the shutdown signals but their defaults)."""
    handlers = [signal.getsignal(signum) for signum in shutdown_signals]
    owned = threading.current_thread() is threading.main_thread() and all(
        callable(h) and h is not signal.default_int_handler for h in handlers
    )
    if not owned:
        return False
    if _report:  # started again in the same process (arq --watch): the hooks are in place
        _report[0].worker = worker
        _report[0].watch(asyncio.current_task())
        return True
    report = ExitReport(worker)
    report.install(asyncio.current_task(), shutdown_signals)
    _report.append(report)
    return True
