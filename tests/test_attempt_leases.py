"""Attempts under a lease: claimed before a body runs, finished or handed back only with their lease."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import UTC, datetime

import pytest

from millrace import Pool, recorder, store
from millrace.recorder import RecordWriter
from millrace.records import AttemptFinished, AttemptReleased, Claimed, ClaimRequest, JobStatus, Outcome
from millrace.store.workers import WorkerRow

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def request(job_id: str, worker: str = "w1") -> ClaimRequest:
    return ClaimRequest(job_id=job_id, queue="q", function="f", args={"n": 1}, enqueued_at=NOW, worker=worker)


def finished(
    claim: Claimed, job_id: str, outcome: Outcome, status: JobStatus, *, lease: int | None = None
) -> AttemptFinished:
    return AttemptFinished(
        job_id=job_id,
        attempt=claim.attempt,
        lease=claim.lease if lease is None else lease,
        outcome=outcome,
        status=status,
        finished_at=NOW,
        duration_ms=1.5,
        error_type=None if outcome == "succeeded" else "ConnectionError",
        error_message=None if outcome == "succeeded" else "down",
    )


async def register(pool: Pool, worker_id: str, *, heartbeat_interval_s: float = 2, silent_after_s: float = 10) -> None:
    row = WorkerRow(
        id=worker_id,
        queue="q",
        host="h",
        pid=1,
        version="t",
        lock_key=1,
        heartbeat_interval_s=heartbeat_interval_s,
        silent_after_s=silent_after_s,
    )
    await store.workers.register(pool, row)


async def claim_one(pool: Pool, job_id: str, worker: str = "w1") -> Claimed | None:
    return (await store.attempts.claim(pool, [request(job_id, worker)])).get(job_id)


async def test_a_claim_creates_a_missing_record_and_counts_the_attempt(pool: Pool) -> None:
    await register(pool, "w1")
    claim = await claim_one(pool, "a")
    assert claim == Claimed(attempt=1, counted_attempts=1, lease=1)
    job = await store.jobs.get_job(pool, "a")
    assert (job.status, job.attempts, job.worker) == ("in_progress", 1, "w1")


async def test_a_job_held_by_a_live_worker_is_not_claimed_again(pool: Pool) -> None:
    await register(pool, "w1")
    await register(pool, "w2")
    assert await claim_one(pool, "b", "w1") is not None
    assert await claim_one(pool, "b", "w2") is None


async def test_a_finished_job_is_never_claimed_again(pool: Pool) -> None:
    """A copy of a finished job (Redis kept it through an outage, or got it back) must not run twice."""
    await register(pool, "w1")
    claim = await claim_one(pool, "c")
    assert claim is not None
    assert await store.attempts.finish(pool, [finished(claim, "c", "succeeded", "succeeded")]) == {"c"}
    assert await claim_one(pool, "c") is None
    assert (await store.attempts.statuses(pool, ["c"])) == {"c": "succeeded"}


async def test_a_job_held_by_a_silent_worker_is_taken_over_and_the_old_attempt_is_lost(pool: Pool) -> None:
    await register(pool, "gone", heartbeat_interval_s=0.05, silent_after_s=0.2)
    await register(pool, "w2")
    first = await claim_one(pool, "d", "gone")
    assert first is not None
    await asyncio.sleep(0.3)
    second = await claim_one(pool, "d", "w2")
    assert second == Claimed(attempt=2, counted_attempts=2, lease=2)
    attempts = await store.jobs.list_attempts(pool, "d")
    assert [(a.outcome, a.worker) for a in attempts] == [("lost", "gone"), (None, "w2")]


async def test_a_finish_with_a_stale_lease_is_fenced_off(pool: Pool) -> None:
    """The cut-off worker comes back after its job was handed on: its late result writes nothing."""
    await register(pool, "gone", heartbeat_interval_s=0.05, silent_after_s=0.2)
    await register(pool, "w2")
    stale = await claim_one(pool, "e", "gone")
    assert stale is not None
    await asyncio.sleep(0.3)
    current = await claim_one(pool, "e", "w2")
    assert current is not None
    assert await store.attempts.finish(pool, [finished(stale, "e", "succeeded", "succeeded")]) == set()
    job = await store.jobs.get_job(pool, "e")
    assert (job.status, job.worker) == ("in_progress", "w2")
    first = (await store.jobs.list_attempts(pool, "e"))[0]
    assert (first.outcome, first.error_type) == ("lost", "LeaseLost")
    assert await store.attempts.finish(pool, [finished(current, "e", "succeeded", "succeeded")]) == {"e"}


async def test_a_release_gives_the_attempt_back_to_the_budget(pool: Pool) -> None:
    await register(pool, "w1")
    claim = await claim_one(pool, "f")
    assert claim is not None
    release = AttemptReleased(job_id="f", attempt=claim.attempt, lease=claim.lease, finished_at=NOW, duration_ms=3)
    assert await store.attempts.release(pool, [release]) == {"f"}
    job = await store.jobs.get_job(pool, "f")
    assert job.status == "queued"
    again = await claim_one(pool, "f")
    assert again == Claimed(attempt=2, counted_attempts=1, lease=3)
    assert [a.outcome for a in await store.jobs.list_attempts(pool, "f")] == ["interrupted", None]


async def test_a_release_keeps_its_reason(pool: Pool) -> None:
    await register(pool, "w1")
    claim = await claim_one(pool, "r")
    assert claim is not None
    release = AttemptReleased(
        job_id="r",
        attempt=claim.attempt,
        lease=claim.lease,
        finished_at=NOW,
        duration_ms=0,
        error_type="RateLimited",
        error_message="its slot passed",
    )
    assert await store.attempts.release(pool, [release]) == {"r"}
    (attempt,) = await store.jobs.list_attempts(pool, "r")
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == (
        "interrupted",
        "RateLimited",
        "its slot passed",
    )
    assert (await store.jobs.get_job(pool, "r")).counted_attempts == 0


async def test_hold_lease_locks_out_a_stale_attempt(pool: Pool) -> None:
    await register(pool, "w1")
    claim = await claim_one(pool, "g")
    assert claim is not None
    async with pool.acquire() as conn:
        assert await store.attempts.hold_lease(conn, "g", claim.lease)
        assert not await store.attempts.hold_lease(conn, "g", claim.lease - 1)


async def test_a_guarded_step_is_done_once_across_attempts_and_only_if_its_transaction_commits(pool: Pool) -> None:
    first = await claim_one(pool, "s")
    assert first is not None
    async with pool.acquire() as conn:
        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                assert await store.attempts.mark_step_done(conn, "s", "charge", lease=first.lease, attempt=1)
                raise RuntimeError("the effect failed: its transaction rolls back, the step with it")
        async with conn.transaction():
            assert await store.attempts.mark_step_done(conn, "s", "charge", lease=first.lease, attempt=1)
        # the worker died before the attempt's end was on record; the next attempt finds the step done
        assert not await store.attempts.mark_step_done(conn, "s", "charge", lease=first.lease + 1, attempt=2)
        assert await store.attempts.mark_step_done(conn, "s", "email", lease=first.lease + 1, attempt=2)


async def test_a_nul_byte_in_an_error_message_does_not_block_the_batch(pool: Pool) -> None:
    await register(pool, "w1")
    claim = await claim_one(pool, "h")
    assert claim is not None
    bad = finished(claim, "h", "dead", "dead")
    bad = dataclasses.replace(bad, error_message="bad \x00 byte \ud800", traceback="tb \x00")
    assert await store.attempts.finish(pool, [bad]) == {"h"}
    assert (await store.jobs.get_job(pool, "h")).last_error == "bad \\0 byte \\ud800"


async def test_two_copies_claimed_in_one_batch_give_one_claim(pool: Pool) -> None:
    await register(pool, "w1")
    writer = RecordWriter(pool)
    writer.start()
    results = await asyncio.gather(writer.claim(request("i")), writer.claim(request("i")))
    await writer.close()
    assert sorted(type(r).__name__ for r in results) == ["Claimed", "Refused"]


async def test_closing_the_writer_writes_the_batch_in_flight(pool: Pool) -> None:
    """Shutdown while the last batch is being written, nothing else queued: that batch still lands."""
    await register(pool, "w1")
    claim = await claim_one(pool, "j")
    assert claim is not None
    writer = RecordWriter(pool)
    writer.start()
    finishing = asyncio.create_task(writer.finish(finished(claim, "j", "succeeded", "succeeded")))
    await asyncio.sleep(0)  # the writer takes the batch: nothing is pending, one write is in flight
    await writer.close()
    assert await finishing
    assert (await store.jobs.get_job(pool, "j")).status == "succeeded"


async def claim_at_a_steady_rate(writer: RecordWriter, prefix: str, jobs: int, per_s: float) -> float:
    """Claims from `jobs` tasks started `1 / per_s` apart, as arq starts jobs; the slowest claim's wait."""
    waits: list[float] = []

    async def one(n: int) -> None:
        started = asyncio.get_running_loop().time()
        assert isinstance(await writer.claim(request(f"{prefix}-{n}")), Claimed)
        waits.append(asyncio.get_running_loop().time() - started)

    tasks = []
    for n in range(jobs):
        tasks.append(asyncio.create_task(one(n)))
        await asyncio.sleep(1 / per_s)
    await asyncio.gather(*tasks)
    return max(waits)


async def test_a_busy_writer_groups_a_steady_stream_and_an_idle_one_writes_at_once(pool: Pool) -> None:
    await register(pool, "w1")
    busy = RecordWriter(pool, in_hand=lambda: 100)
    busy.start()
    slowest_s = await claim_at_a_steady_rate(busy, "busy", 400, per_s=1000)
    await busy.close()
    # about 0.4 s of claims in batches of up to 15 ms: at most a few dozen statements, not 400
    assert busy.batches_written <= 60
    assert slowest_s < 1.0  # no claim is held much past the linger (generous: a loaded machine)

    idle = RecordWriter(pool, in_hand=lambda: 1)
    idle.start()
    await claim_at_a_steady_rate(idle, "idle", 20, per_s=1000)
    await idle.close()
    assert idle.batches_written >= 10  # one job in hand: every claim goes out as soon as the last write is back


async def test_a_writer_does_not_wait_for_events_no_attempt_in_hand_can_send(pool: Pool) -> None:
    """A worker of concurrency 2, both attempts waiting on their claims: nothing else can join the batch,
    so it goes out at once instead of lingering (which would hold the worker to a crawl)."""
    await register(pool, "w1")
    writer = RecordWriter(pool, in_hand=lambda: 2, max_in_hand=2)
    writer.start()
    started = asyncio.get_running_loop().time()
    for n in range(100):
        await asyncio.gather(writer.claim(request(f"pair-{n}-a")), writer.claim(request(f"pair-{n}-b")))
    elapsed_s = asyncio.get_running_loop().time() - started
    await writer.close()
    assert writer.batches_written == 100
    assert elapsed_s < 1.0  # lingering 15 ms a pair would take 1.5 s; without it, a write's time a pair


async def lingering_writer(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> tuple[RecordWriter, asyncio.Task[float]]:
    """A writer lingering (up to 5 s) on a batch of a steady stream's claims, and the stream's task."""
    await register(pool, "w1")
    monkeypatch.setattr(recorder, "LINGER_UNTIL_EVENTS", 100_000)  # at this rate, a linger of the whole 5 s
    writer = RecordWriter(pool, in_hand=lambda: 100, max_in_hand=100_000, linger_s=5.0)
    writer.start()
    stream = asyncio.create_task(claim_at_a_steady_rate(writer, "warm", 200, per_s=1000))
    await asyncio.sleep(0.5)  # the stream has been sent (about 0.2 s), and its rate started a linger
    assert not stream.done()  # its last claims wait for their batch to fill
    return writer, stream


async def test_an_urgent_claim_cuts_a_linger_short(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer is already lingering when the urgent claim comes: the claim does not wait it out."""
    writer, stream = await lingering_writer(pool, monkeypatch)
    started = asyncio.get_running_loop().time()
    assert isinstance(await writer.claim(request("urgent"), urgent=True), Claimed)
    assert asyncio.get_running_loop().time() - started < 1.0  # not the linger's 5 s
    await asyncio.wait_for(stream, 1.0)  # the lingering claims went out with the urgent one
    await writer.close()


async def test_closing_cuts_a_linger_short(pool: Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    writer, stream = await lingering_writer(pool, monkeypatch)
    started = asyncio.get_running_loop().time()
    await writer.close()
    assert asyncio.get_running_loop().time() - started < 1.0
    await asyncio.wait_for(stream, 1.0)  # written on the way out, not dropped
