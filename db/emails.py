"""The sent-email guard: one email per (template, recipient, idempotency key), however often its job runs."""

from __future__ import annotations

from millrace import Executor


async def lock_unsent(conn: Executor, *, template: str, recipient: str, idempotency_key: str, job_id: str) -> bool:
    """Inside a transaction: lock the email's guard row; True if it is still to be sent.

    A second run of the same job waits here until the first commits, then finds it sent.
    """
    await conn.execute(
        """INSERT INTO sent_emails (template, recipient, idempotency_key, job_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""",
        template,
        recipient,
        idempotency_key,
        job_id,
    )
    sent_at = await conn.fetchval(
        """SELECT sent_at FROM sent_emails WHERE template = $1 AND recipient = $2 AND idempotency_key = $3
           FOR UPDATE""",
        template,
        recipient,
        idempotency_key,
    )
    return sent_at is None


async def mark_sent(conn: Executor, *, template: str, recipient: str, idempotency_key: str, job_id: str) -> None:
    await conn.execute(
        """UPDATE sent_emails SET sent_at = now(), job_id = $4
           WHERE template = $1 AND recipient = $2 AND idempotency_key = $3""",
        template,
        recipient,
        idempotency_key,
        job_id,
    )
