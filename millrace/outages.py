"""What counts as Redis or PostgreSQL being away for now: wait and try again, never a bug to report.

arq's own Redis client (the worker's poll, its job starts and finishes) waits out an outage inside each
command, with `PatientRetry`: Redis unreachable, or Redis refusing writes it cannot persist
(`RedisWritesRefused`, told apart from other error replies by `OutageParser`). The runtime's own calls
fail fast instead, catch OUTAGES, and try again on their next turn.
"""

from __future__ import annotations

import asyncio
import copy
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from redis.asyncio.connection import DefaultParser
from redis.asyncio.retry import Retry
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from millrace.errors import RedisWritesRefused
from millrace.store.pool import TRANSIENT_ERRORS

T = TypeVar("T")
log = structlog.get_logger(__name__)

OUTAGES: tuple[type[BaseException], ...] = (RedisError, *TRANSIENT_ERRORS)
#: a server that cannot be reached or will not take writes now, and nothing else: what a worker that is
#: starting waits out. Not an error reply, a bad argument or a missing file: those are bugs or
#: configuration, and a worker that waited on them for ever would hide a broken deploy
UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted (OSError's connection family)
    TimeoutError,
    socket.gaierror,  # a name that does not resolve yet (a server still starting in its network)
    RedisConnectionError,
    RedisTimeoutError,
    RedisWritesRefused,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
)
#: while Redis stays away, one warning this often: a worker retries every command, and a line per try
#: would flood its log
OUTAGE_LOG_EVERY_S = 10.0


class OutageParser(DefaultParser):  # type: ignore[valid-type,misc]  # redis-py picks hiredis or not at import
    """redis-py's reply parser, which reads Redis's refusal of writes it cannot persist as an outage."""

    @classmethod
    def parse_error(cls, response: str) -> ResponseError:
        # "MISCONF ..." from Redis 7, scripts included; Redis 6 wraps a script's: "ERR Error running script ... MISCONF"
        if response.startswith("MISCONF") or (response.startswith("ERR") and "MISCONF" in response):
            return RedisWritesRefused(response)
        error: ResponseError = super().parse_error(response)
        return error


class OutageLog:
    """A warning when Redis starts failing commands, one every `every_s` while it goes on, and a line
    when it answers again; shared by every connection of a pool."""

    def __init__(self, every_s: float = OUTAGE_LOG_EVERY_S) -> None:
        self._every_s = every_s
        self._since: float | None = None
        self._warned_at = -math.inf
        self._warned = False

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        if now - self._warned_at >= self._every_s:
            self._warned_at, self._warned = now, True
            log.warning("redis_command_failed", error=repr(error), failing_for_s=round(now - self._since, 1))

    def answered(self) -> None:
        if self._since is not None and self._warned:
            log.info("redis_came_back", away_s=round(time.monotonic() - self._since, 1))
        self._since, self._warned = None, False


class PatientRetry(Retry):
    """redis-py's retry of a command, which logs (rate-limited) while Redis is away."""

    __slots__ = ("_outages",)

    def __init__(self, backoff: AbstractBackoff, retries: int, *, outages: OutageLog | None = None) -> None:
        super().__init__(backoff, retries)
        self._outages = outages or OutageLog()

    def __deepcopy__(self, memo: dict[int, Any]) -> PatientRetry:
        # redis-py gives each connection a deep copy; the log stays one, or each connection would warn
        retry = PatientRetry(copy.deepcopy(self._backoff, memo), self._retries, outages=self._outages)
        retry._supported_errors = self._supported_errors
        return retry

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]) -> T:
        failures = 0

        async def failed(error: RedisError) -> None:
            nonlocal failures
            failures += 1
            self._outages.failed(error)
            try:
                await fail(error)
            except WatchError:
                # a transaction that watched keys is handed back to its caller, not tried again: arq's job
                # start, which would send it again at once; the backoff's wait comes first
                await asyncio.sleep(self._backoff.compute(failures))
                raise

        result = await super().call_with_retry(do, failed)
        if failures:
            self._outages.answered()
        return result
