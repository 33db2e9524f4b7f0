"""The event-loop watchdog: a job that blocks the loop (a CPU spin, a blocking call) ends its process.

A blocked loop runs nothing else: no other job, no heartbeat, no timeout. A thread beside it notices
when the loop has not turned for `stall_s`, names the attempt that was running on it with the stack
of the blocking code, records both in PostgreSQL on a connection of its own, and ends the process so
that its supervisor starts a fresh one. The attempt counts: a job that blocks every worker it lands on
ends dead after its policy's attempts, and the reaper hands the worker's other jobs on at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from millrace import exits, store
from millrace.runtime import RunningAttempt

log = structlog.get_logger(__name__)

#: the process's exit status when the watchdog ends it (EX_SOFTWARE): any supervisor restarts it
EXIT_STATUS = 70
_RECORD_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stall:
    blocked_s: float
    attempt: RunningAttempt | None
    stack: str


class Watchdog:
    def __init__(
        self, *, dsn: str, worker_id: str, stall_s: float, running: Mapping[asyncio.Task[Any], RunningAttempt]
    ) -> None:
        self._dsn = dsn
        self._worker_id = worker_id
        self._stall_s = stall_s
        self._running = running
        self._last_turn = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stopped = threading.Event()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Call from the event loop's thread."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._last_turn = time.monotonic()
        self._ticker = self._loop.create_task(self._tick(), name="millrace-watchdog-tick")
        threading.Thread(target=self._watch, name="millrace-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.cancel()

    async def _tick(self) -> None:
        while True:
            self._last_turn = time.monotonic()
            await asyncio.sleep(self._stall_s / 5)

    def _watch(self) -> None:
        period_s = min(0.5, self._stall_s / 5)
        last_look = time.monotonic()
        while not self._stopped.wait(period_s):
            now = time.monotonic()
            if now - last_look > self._stall_s / 2:
                # this thread was held up as well: the whole process was paused (SIGSTOP, a suspended VM),
                # not the loop blocked by a job; give the loop the time to turn again
                self._last_turn = now
            last_look = now
            blocked_s = now - self._last_turn
            if blocked_s > self._stall_s:
                self._end(self._stall(blocked_s))

    def _stall(self, blocked_s: float) -> Stall:
        assert self._loop is not None
        task = asyncio.current_task(self._loop)
        frame = sys._current_frames().get(self._loop_thread)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
        return Stall(blocked_s=blocked_s, attempt=self._running.get(task) if task else None, stack=stack)

    def _end(self, stall: Stall) -> None:
        attempt = stall.attempt
        message = (
            f"the event loop was blocked for {stall.blocked_s:.1f}s"
            + (f" by {attempt.function}" if attempt else "")
            + "; the watchdog ended the worker (run blocking work in a thread or a subprocess)"
        )
        log.critical("event_loop_blocked", job_id=attempt and attempt.job_id, message=message, stack=stall.stack)
        try:
            asyncio.run(asyncio.wait_for(self._record(stall, message), _RECORD_TIMEOUT_S))
        except Exception as error:  # ending the process matters more than the record: the reaper finds it
            log.error("event_loop_block_not_recorded", error=repr(error))
        # os._exit runs no exit hook (millrace.exits): the last line is written here
        exits.last_line(
            "worker_stopped",
            level=logging.CRITICAL,
            worker=self._worker_id,
            reason="event_loop_blocked",
            exit_status=EXIT_STATUS,
        )
        os._exit(EXIT_STATUS)

    async def _record(self, stall: Stall, message: str) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=_RECORD_TIMEOUT_S,
            server_settings=store.pool.bounded(None, statement_timeout_s=_RECORD_TIMEOUT_S, lock_timeout_s=1.0),
        )
        try:
            await store.workers.record_stall(
                conn,
                self._worker_id,
                job_id=stall.attempt.job_id if stall.attempt else None,
                attempt=stall.attempt.attempt if stall.attempt else None,
                message=message,
                stack=stall.stack,
            )
        finally:
            await conn.close()
