"""The job-record repository: batched attempt events, applied in any grouping, give the same record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from millrace import Pool, store
from millrace.recorder import RecordWriter
from millrace.records import AttemptFinished, AttemptStarted, JobStatus, Outcome

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def started(job_id: str, attempt: int, *, attempt_base: int = 0, worker: str = "w1") -> AttemptStarted:
    return AttemptStarted(
        job_id=job_id,
        attempt=attempt,
        attempt_base=attempt_base,
        worker=worker,
        started_at=NOW,
        queue="q",
        function="f",
        args={"n": 1},
        enqueued_at=NOW,
    )


def finished(job_id: str, attempt: int, outcome: Outcome, status: JobStatus) -> AttemptFinished:
    return AttemptFinished(
        job_id=job_id,
        attempt=attempt,
        outcome=outcome,
        status=status,
        finished_at=NOW,
        duration_ms=1.5,
        error_type=None if outcome == "succeeded" else "ConnectionError",
        error_message=None if outcome == "succeeded" else "down",
    )


async def test_events_in_one_batch_or_many_give_the_same_record(pool: Pool) -> None:
    events: list[AttemptStarted | AttemptFinished] = [
        started("a", 1),
        finished("a", 1, "retrying", "retrying"),
        started("a", 2),
        finished("a", 2, "succeeded", "succeeded"),
    ]
    async with pool.acquire() as conn:
        await store.jobs.apply_attempt_events(
            conn,
            [e for e in events if isinstance(e, AttemptStarted)],
            [e for e in events if isinstance(e, AttemptFinished)],
        )
        for event in events:  # the same events for job "b", one batch each
            if isinstance(event, AttemptStarted):
                await store.jobs.apply_attempt_events(conn, [started("b", event.attempt)], [])
            else:
                await store.jobs.apply_attempt_events(
                    conn, [], [finished("b", event.attempt, event.outcome, event.status)]
                )
        records = [await store.jobs.get_job(conn, job_id) for job_id in ("a", "b")]
        histories = [[a.outcome for a in await store.jobs.list_attempts(conn, job_id)] for job_id in ("a", "b")]
    assert [(r.status, r.attempts, r.last_error_type) for r in records] == [("succeeded", 2, "ConnectionError")] * 2
    assert histories == [["retrying", "succeeded"]] * 2


async def test_late_finish_of_an_overtaken_attempt_does_not_rewrite_the_status(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await store.jobs.apply_attempt_events(conn, [started("c", 1), started("c", 2)], [])
        await store.jobs.apply_attempt_events(conn, [], [finished("c", 1, "retrying", "retrying")])
        job = await store.jobs.get_job(conn, "c")
    assert (job.status, job.attempts) == ("in_progress", 2)


async def test_an_attempt_whose_start_was_never_written_is_recorded_lost(pool: Pool) -> None:
    """The worker died within a millisecond of starting attempt 1: attempt 2's start records it."""
    async with pool.acquire() as conn:
        await store.jobs.apply_attempt_events(conn, [started("d", 2)], [])
        attempts = await store.jobs.list_attempts(conn, "d")
    assert [(a.attempt, a.outcome, a.worker, a.started_at) for a in attempts] == [
        (1, "lost", None, None),
        (2, None, "w1", NOW),
    ]


async def test_an_open_attempt_is_marked_lost_when_a_later_one_starts(pool: Pool) -> None:
    async with pool.acquire() as conn:
        await store.jobs.apply_attempt_events(conn, [started("e", 1, worker="dead-worker")], [])
        await store.jobs.apply_attempt_events(conn, [started("e", 2, worker="w2")], [])
        attempts = await store.jobs.list_attempts(conn, "e")
    assert [(a.outcome, a.worker) for a in attempts] == [("lost", "dead-worker"), (None, "w2")]


async def test_a_nul_byte_in_an_error_message_does_not_block_the_batch(pool: Pool) -> None:
    bad = AttemptFinished(
        job_id="f",
        attempt=1,
        outcome="dead",
        status="dead",
        finished_at=NOW,
        duration_ms=1,
        error_type="ValueError",
        error_message="bad \x00 byte",
        traceback="tb \x00",
    )
    async with pool.acquire() as conn:
        await store.jobs.apply_attempt_events(conn, [started("f", 1)], [bad])
        job = await store.jobs.get_job(conn, "f")
    assert job.last_error == "bad \\0 byte"


async def test_closing_the_writer_writes_the_batch_in_flight(pool: Pool) -> None:
    """Shutdown while the last batch is being written, nothing else queued: that batch still lands."""
    writer = RecordWriter(pool)
    writer.start()
    writer.record_soon(started("g", 1))
    await asyncio.sleep(0)  # the writer takes the batch: nothing is pending, one write is in flight
    await writer.close()
    async with pool.acquire() as conn:
        assert (await store.jobs.get_job(conn, "g")).status == "in_progress"
