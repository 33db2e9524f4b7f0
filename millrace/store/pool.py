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

#: errors that mean "PostgreSQL is away for now": wait and try again; anything else is a bug to report
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
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


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    reset_sessions: bool = False,
    server_settings: dict[str, str] | None = None,
) -> Pool:
    """A pool with the codecs every repository relies on.

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
        server_settings=server_settings,
    )


async def connect(
    dsn: str,
    *,
    connect_timeout_s: float = 60,
    command_timeout_s: float | None = None,
    server_settings: dict[str, str] | None = None,
) -> asyncpg.Connection[Any]:
    """A connection of its own (not pooled), with the same codecs as the pool's."""
    conn = await asyncpg.connect(
        dsn, timeout=connect_timeout_s, command_timeout=command_timeout_s, server_settings=server_settings
    )
    await _init_connection(conn)
    return conn
