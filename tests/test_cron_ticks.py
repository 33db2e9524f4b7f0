"""Claiming cron ticks in PostgreSQL: one run per tick, retries of that run allowed, late duplicates not."""

from __future__ import annotations

from datetime import UTC, datetime

from millrace import Pool, store

TICK = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
JOB = "cron:daily:1795593600000"


async def record(pool: Pool, status: str) -> None:
    await pool.execute(
        """INSERT INTO millrace_jobs (id, queue, function, status) VALUES ($1, 'q', 'daily', $2)
           ON CONFLICT (id) DO UPDATE SET status = $2""",
        JOB,
        status,
    )


async def test_the_first_claim_wins_and_another_id_loses(pool: Pool) -> None:
    assert await store.cron.claim_tick(pool, "daily", TICK, JOB)
    assert not await store.cron.claim_tick(pool, "daily", TICK, "cron:daily:other")


async def test_the_owner_may_claim_again_while_its_run_is_unfinished(pool: Pool) -> None:
    assert await store.cron.claim_tick(pool, "daily", TICK, JOB)
    for status in ("in_progress", "retrying"):  # its worker died, or its policy retries it
        await record(pool, status)
        assert await store.cron.claim_tick(pool, "daily", TICK, JOB)


async def test_a_finished_tick_enqueued_again_under_the_same_id_does_not_run(pool: Pool) -> None:
    """A worker whose clock lags enqueues the tick after it ran: arq keeps no result for crons."""
    assert await store.cron.claim_tick(pool, "daily", TICK, JOB)
    for status in ("succeeded", "dead"):
        await record(pool, status)
        assert not await store.cron.claim_tick(pool, "daily", TICK, JOB)
