"""Driver errors translated once, here; nothing above db/ imports asyncpg.exceptions."""

from __future__ import annotations

import asyncpg


class NotFound(LookupError):
    def __init__(self, what: str, key: object) -> None:
        self.what = what
        self.key = key
        super().__init__(f"{what} {key!r} not found")


class AlreadyExists(Exception):
    def __init__(self, what: str, constraint: str | None) -> None:
        self.what = what
        self.constraint = constraint
        super().__init__(f"{what} already exists ({constraint})")


#: errors that mean "PostgreSQL is away for now": wait and try again; anything else is a bug to report
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,  # the connection was closed under us
)
