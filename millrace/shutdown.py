"""The deploy's grace: on SIGTERM, job bodies still running after `grace_s` are cut by Millrace, not arq.

arq's own wait (`job_completion_wait`) ends by cancelling its job tasks wherever they are, and a task
cancelled inside arq's shielded finish (the write that frees the job in Redis) ends cancelled: arq's
close then gathers it, the CancelledError escapes, and the worker exits with status 1 in the middle of
a deploy. So Millrace cuts the bodies itself, at `grace_s`: each one hands its job back (the attempt
`interrupted`, not counted) and returns to arq, which finishes it normally. arq's wait is set longer by
`ARQ_EXTRA_WAIT_S`, long enough for those hand-backs, so that it finds nothing left to cancel.

The signal is heard without touching arq's handler: asyncio's loop listens on its wake-up descriptor,
which the interpreter writes for any signal that has a Python handler, so a handler of ours installed
with `signal.signal` runs first and arq's still runs after it.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

#: what arq waits beyond the grace: a cut body's hand-back (bounded by execution.RELEASE_WAIT_S) and
#: arq's finish of it; the supervisor's grace must cover both (Kubernetes' 30 s covers 25 + 4)
ARQ_EXTRA_WAIT_S = 4
#: the signals arq answers with its wait for running jobs
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ShutdownGrace:
    """Calls `cut` once, `grace_s` after the first shutdown signal."""

    def __init__(self, *, grace_s: float, cut: Callable[[], int]) -> None:
        self._grace_s = grace_s
        self._cut = cut
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._previous: dict[signal.Signals, Callable[[int, FrameType | None], object]] = {}

    def install(self) -> bool:
        """Listen for the shutdown signals that an event loop handles; False if there are none here."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._loop = asyncio.get_running_loop()
        for signum in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(signum)
            # only in front of a loop's handler (arq's): where nobody handles the signal (a test's
            # in-process worker), the default must stay, or SIGTERM would no longer end the process
            if callable(previous) and previous is not signal.default_int_handler:
                self._previous[signum] = previous
                signal.signal(signum, self._on_signal)
        return bool(self._previous)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
        if self._timer is not None:
            self._timer.cancel()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # a signal handler runs between two bytecodes of the main thread, the loop's own code included:
        # the only safe way in is the loop's thread-safe queue
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._arm)
        previous = self._previous.get(signal.Signals(signum))
        if previous is not None:
            previous(signum, frame)

    def _arm(self) -> None:
        if self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self._grace_s, self._cut_now)

    def _cut_now(self) -> None:
        cut = self._cut()
        if cut:
            log.warning("shutdown_grace_over", jobs_handed_back=cut, grace_s=self._grace_s)
