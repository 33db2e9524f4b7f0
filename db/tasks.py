"""Tasks of the demo service: assigning one notifies the assignee."""

from __future__ import annotations

import asyncpg

from millrace import Executor, NotFound


async def insert_task(conn: Executor, *, title: str, assignee_id: int) -> int:
    try:
        task_id: int = await conn.fetchval(
            "INSERT INTO tasks (title, assignee_id) VALUES ($1, $2) RETURNING id", title, assignee_id
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFound("user", assignee_id) from None
    return task_id
