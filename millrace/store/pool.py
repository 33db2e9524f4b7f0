"""Opening asyncpg pools with the codecs every repository relies on, and what counts as an outage."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

#: what repository functions take: a plain connection or one borrowed from a pool
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Pool: TypeAlias = "asyncpg.Pool[Any]"
#: what a read or a single-statement write accepts: a connection, or the pool itself
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"

#: a statement the server ended at its bound (statement_timeout, lock_timeout): the connection is fine, and
#: the same statement may pass later (the lock it waited for is let go, the load is lighter)
STATEMENT_CUT_SHORT: tuple[type[BaseException], ...] = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError)

#: errors that mean "PostgreSQL is away for now": wait and try again; anything else is a bug to report
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *STATEMENT_CUT_SHORT,
    OSError,  # refused, reset, unreachable
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.TooManyConnectionsError,  # max_connections reached: capacity comes back, a record must not be dropped
)


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    # jsonb columns read and write Python values, so repositories never json.dumps by hand
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection[Any]) -> None:
    """No reset statement when a connection goes back to the pool (asyncpg still rolls back a transaction
    left open, and forgets the borrower's listeners)."""


#: for a connection that only runs statements finding each row by its key (the record writer's, the
#: progress writer's and the heartbeat's): never a sequential scan of a table an index serves. asyncpg
#: prepares each statement once per connection, and PostgreSQL then caches a generic plan made with the
#: tables' size at the time. Made while millrace_job_attempts was small (a new database, a worker started
#: early), that plan reads the whole table at every claim, finish and heartbeat, and keeps doing so as the
#: table grows until an ANALYZE comes: 79 million rows read for a drain of 20,000 jobs, each claim 4 times
#: slower by the end, and two or three reads of the whole table at every heartbeat (of millrace_jobs, at every
#: progress write)
KEYED_STATEMENTS_ONLY = {"enable_seqscan": "off"}


#: no statement of a pool or connection opened here runs longer than this, unless the opener says otherwise:
#: the bound is PostgreSQL's own (statement_timeout), so a client that gave up or died (a terminated
#: connection, a frozen or killed process) leaves no backend behind still waiting on a lock or holding one.
#: The application's statements on these pools have it too; one that needs longer says so for its own
#: transaction (SET LOCAL statement_timeout = ...)
DEFAULT_STATEMENT_TIMEOUT_S = 60.0


def bounded(
    server_settings: dict[str, str] | None,
    *,
    statement_timeout_s: float | None,
    lock_timeout_s: float | None = None,
) -> dict[str, str]:
    """`server_settings` with PostgreSQL's own bounds on every statement and every lock wait (None: none).

    A transaction left idle as long as a statement may run is ended too (idle_in_transaction_session_timeout):
    a process frozen inside a guarded transaction (SIGSTOP, a paused VM) holds its job's row for as long as
    the freeze lasts, and that is what frees it, so that the reaper can hand the job on.
    """
    settings = dict(server_settings or {})
    if statement_timeout_s is not None:
        settings["statement_timeout"] = f"{max(1, round(statement_timeout_s * 1000))}ms"
        settings["idle_in_transaction_session_timeout"] = settings["statement_timeout"]
    if lock_timeout_s is not None:
        settings["lock_timeout"] = f"{max(1, round(lock_timeout_s * 1000))}ms"
    return settings


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    reset_sessions: bool = False,
    server_settings: dict[str, str] | None = None,
    statement_timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
) -> Pool:
    """A pool with the codecs every repository relies on, whose statements PostgreSQL cuts at
    `statement_timeout_s` (None: never).

    asyncpg's default reset (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) costs a round
    trip every time a connection goes back: as much as the record write it follows. Millrace leaves no
    session state on a pooled connection (its locks are transaction-scoped, its LISTEN has a connection
    of its own), so its pools skip it. An application that SETs, LISTENs or takes session advisory
    locks on pooled connections passes `reset_sessions=True`.
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_sessions else _keep_session,
        server_settings=bounded(server_settings, statement_timeout_s=statement_timeout_s),
    )


async def connect(
    dsn: str,
    *,
    connect_timeout_s: float = 60,
    command_timeout_s: float | None = None,
    server_settings: dict[str, str] | None = None,
    statement_timeout_s: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
    lock_timeout_s: float | None = None,
) -> asyncpg.Connection[Any]:
    """A connection of its own (not pooled), with the same codecs and bounds as the pool's."""
    conn = await asyncpg.connect(
        dsn,
        timeout=connect_timeout_s,
        command_timeout=command_timeout_s,
        server_settings=bounded(
            server_settings, statement_timeout_s=statement_timeout_s, lock_timeout_s=lock_timeout_s
        ),
    )
    await _init_connection(conn)
    return conn
