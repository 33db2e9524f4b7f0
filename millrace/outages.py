"""What counts as Redis or PostgreSQL being away for now: wait and try again, never a bug to report."""

from __future__ import annotations

from redis.exceptions import RedisError

from millrace.store.pool import TRANSIENT_ERRORS

OUTAGES: tuple[type[BaseException], ...] = (RedisError, *TRANSIENT_ERRORS)
