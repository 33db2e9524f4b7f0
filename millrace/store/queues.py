"""Queue pauses: a row while a queue is paused. Workers read it with their heartbeat (store.workers)."""

from __future__ import annotations

from datetime import datetime

from millrace.store.pool import Executor


async def pause(conn: Executor, queue: str, *, by: str) -> bool:
    """Pause `queue`; False if it was paused already."""
    paused = await conn.fetchval(
        "INSERT INTO millrace_queue_pauses (queue, paused_by) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING true",
        queue,
        by,
    )
    return bool(paused)


async def resume(conn: Executor, queue: str) -> bool:
    """Resume `queue`; False if it was not paused."""
    resumed = await conn.fetchval("DELETE FROM millrace_queue_pauses WHERE queue = $1 RETURNING true", queue)
    return bool(resumed)


async def paused_queues(conn: Executor) -> dict[str, tuple[datetime, str]]:
    """Every paused queue: since when, and by whom."""
    rows = await conn.fetch("SELECT queue, paused_at, paused_by FROM millrace_queue_pauses")
    return {r["queue"]: (r["paused_at"], r["paused_by"]) for r in rows}


async def is_paused(conn: Executor, queue: str) -> bool:
    found = await conn.fetchval("SELECT true FROM millrace_queue_pauses WHERE queue = $1", queue)
    return bool(found)
