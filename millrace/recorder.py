"""Writes attempt claims, finishes and hand-backs to PostgreSQL in batches: group commit, never one round
trip per event.

Events wait in memory while a write is in flight and go out together in the next one, so the batch grows
with the load by itself: each kind costs one statement a batch, whatever the batch's size. That alone
groups little: a write takes well under a millisecond, and arq starts a worker's jobs one by one, a
Redis round trip apart (4 events a batch, 0.8 statements a job, in `python -m bench.peers`). So while the
worker holds several attempts (`in_hand()`) and events arrive fast, the writer lets the batch fill before
each write, for as long as the current rate takes to bring LINGER_UNTIL_EVENTS (or one event from each
attempt the worker may hold, `max_in_hand`, if fewer), at most `linger_s`: a few milliseconds more per
start and finish, where a queue is backlogged anyway, for a fifth of the statements and half of
PostgreSQL's CPU per job. An idle worker's job is written at once, and so is an urgent claim (a rate
limit's slot is due).

A claim is what lets a body run, so its attempt is on record before the body starts: a job that kills
its worker is counted, and cannot crash-loop unseen. Claims are not retried here: a claim that cannot be
written fails at once, and the job waits in Redis (see execution). A finish waits until it is committed
before arq acknowledges the job in Redis, and finishes and hand-backs are retried until PostgreSQL
answers: a worker that dies after that cannot lose the record of a finished job.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from millrace import store
from millrace.records import AttemptFinished, AttemptReleased, Claimed, ClaimRequest, Refused
from millrace.store.pool import TRANSIENT_ERRORS, Pool

log = structlog.get_logger(__name__)

Event = ClaimRequest | AttemptFinished | AttemptReleased
#: the longest a busy worker's writer lets a batch fill before it writes: a start or a finish under load
#: waits at most this long for its record (a rate limit's slot tolerates 25 ms of lateness)
LINGER_S = 0.015
#: the batch a lingering writer waits for: with a claim and a finish a job, two statements per 32 jobs
LINGER_UNTIL_EVENTS = 64
#: below this many events a second, a linger would gather too few to be worth its wait
LINGER_FROM_EVENTS_PER_S = 300.0
#: with fewer attempts in hand the worker is idle, and its one job's record goes out at once
LINGER_FROM_IN_HAND = 2
#: the rate is an average over about this long: a worker that went quiet comes back with a rate near zero
RATE_WINDOW_S = 0.05


@dataclass(slots=True)
class _Batch:
    claims: list[tuple[ClaimRequest, asyncio.Future[Claimed | Refused]]] = field(default_factory=list)
    finishes: list[tuple[AttemptFinished, asyncio.Future[bool]]] = field(default_factory=list)
    releases: list[tuple[AttemptReleased, asyncio.Future[bool]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.claims) + len(self.finishes) + len(self.releases)


class RecordWriter:
    def __init__(
        self,
        pool: Pool,
        *,
        max_batch: int = 1000,
        max_retry_delay_s: float = 5.0,
        in_hand: Callable[[], int] = lambda: 0,
        max_in_hand: int = LINGER_UNTIL_EVENTS,
        linger_s: float = LINGER_S,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._in_hand = in_hand
        self._max_in_hand = max_in_hand
        self._linger_s = linger_s
        self._max_retry_delay_s = max_retry_delay_s
        self._pending: list[tuple[Event, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        #: events a second, averaged over about RATE_WINDOW_S of time
        self._rate = 0.0
        self._arrived = 0
        self._measured_at = time.monotonic()
        #: a claim that must not wait is pending
        self._urgent = False
        #: set by an urgent claim or by close: ends a linger already under way
        self._stop_lingering = asyncio.Event()
        self.batches_written = 0
        self.events_written = 0
        #: attempts whose end is on record: what a worker has done, as its heartbeat reports it
        self.finishes_written = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="millrace-record-writer")

    async def claim(self, request: ClaimRequest, *, urgent: bool = False) -> Claimed | Refused:
        """Claim a job for an attempt; raises what PostgreSQL raised if the claim could not be written.
        `urgent`: written without lingering (its rate limit's slot is due)."""
        if urgent:
            self._urgent = True
            self._stop_lingering.set()
        result: Claimed | Refused = await self._submit(request)
        return result

    async def finish(self, event: AttemptFinished) -> bool:
        """Return once `event` is committed: True, or False if the attempt had lost its lease (fenced off)."""
        applied: bool = await self._submit(event)
        return applied

    async def release(self, event: AttemptReleased) -> bool:
        """Hand a job back without counting its attempt; False if the attempt had lost its lease."""
        released: bool = await self._submit(event)
        return released

    async def _submit(self, event: Event) -> Any:
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((event, done))
        self._arrived += 1
        self._wake.set()
        # shielded: arq cancelling the job must not cancel the write of its record
        return await asyncio.shield(done)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Write everything pending, the batch in flight included, then stop.

        Bounded: with PostgreSQL away the writer would retry for ever, and a worker must still stop.
        """
        if self._task is None:
            return
        self._closing = True
        self._stop_lingering.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.error("job_records_not_written_at_shutdown", events=len(self._pending))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                self._measure_rate()
                linger_s = self._linger_for_batch()
                if linger_s > 0:
                    await self._linger(linger_s)
                self._urgent = False
                self._stop_lingering.clear()
                taken = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write_until_done(_sorted(taken))
            if self._closing:
                return

    async def _linger(self, linger_s: float) -> None:
        """Let the batch fill for `linger_s`, or until an urgent claim or close cuts it short."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger_s):
                await self._stop_lingering.wait()

    def _linger_for_batch(self) -> float:
        """How long to let the batch fill: as long as the current rate takes to bring what can still come,
        at most `linger_s`; nothing for an urgent claim, nor when events come too slowly to group.

        What can come: LINGER_UNTIL_EVENTS, but no more than one event for each attempt the worker may hold
        (its concurrency). Not only from the attempts in hand: arq starts new ones meanwhile, and under load
        they are where most of a batch comes from. A worker of concurrency 2 whose two attempts both wait
        on this write has nothing more to wait for."""
        in_hand = self._in_hand()
        missing = min(LINGER_UNTIL_EVENTS, self._max_in_hand) - len(self._pending)
        if (
            self._closing
            or self._urgent
            or in_hand < LINGER_FROM_IN_HAND
            or missing <= 0
            or self._rate < LINGER_FROM_EVENTS_PER_S
        ):
            return 0.0
        return min(self._linger_s, missing / self._rate)

    def _measure_rate(self) -> None:
        """Events a second, averaged over about RATE_WINDOW_S however often it is measured."""
        now = time.monotonic()
        elapsed = now - self._measured_at
        if elapsed <= 0:
            return
        weight = 1 - math.exp(-elapsed / RATE_WINDOW_S)
        self._rate += weight * (self._arrived / elapsed - self._rate)
        self._arrived = 0
        self._measured_at = now

    async def _write_until_done(self, batch: _Batch) -> None:
        size = len(batch)
        delay_s = 0.05
        while True:
            try:
                await self._write(batch)
                break
            except TRANSIENT_ERRORS as error:
                # PostgreSQL is away: claims fail now, finishes and hand-backs wait and try again
                log.warning("job_records_write_failed", error=repr(error), events=len(batch), retry_in_s=delay_s)
                _fail(batch.claims, error)
                batch.claims = []
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._max_retry_delay_s)
            except Exception as error:
                # a bad event must not hold back the others: write them one by one, drop what fails
                await self._write_one_by_one(batch, error)
                break
        self.batches_written += 1
        self.events_written += size

    async def _write(self, batch: _Batch) -> None:
        async with self._pool.acquire() as conn:
            if batch.claims:
                await _apply_claims(conn, batch.claims)
                batch.claims = []  # answered: a retry of this batch must not claim them twice
            if batch.finishes:
                applied, group_ends = await store.attempts.finish_noting_group_ends(
                    conn, [e for e, _ in batch.finishes]
                )
                self.finishes_written += len(applied)
                _answer(batch.finishes, lambda e: e.job_id in applied)
                batch.finishes = []
                if group_ends:
                    await _count_group_ends(conn, group_ends)
            if batch.releases:
                released = await store.attempts.release(conn, [e for e, _ in batch.releases])
                _answer(batch.releases, lambda e: e.job_id in released)
                batch.releases = []

    async def _write_one_by_one(self, batch: _Batch, error: Exception) -> None:
        log.error("job_records_batch_refused", error=repr(error), events=len(batch))
        events: list[tuple[Event, asyncio.Future[Any]]] = [*batch.claims, *batch.finishes, *batch.releases]
        for event, done in events:
            try:
                await self._write(_sorted([(event, done)]))
            except Exception as one_error:
                log.exception("job_record_dropped", job_id=event.job_id)
                if not done.done():
                    done.set_exception(one_error)


async def _count_group_ends(conn: Any, job_ids: list[str]) -> None:
    """Count fan-out children whose end was just recorded: a statement more only for them. If it fails, or
    the worker dies first, the reconciler's sweep counts them (store.groups.list_uncounted_ended): late,
    never lost, never twice."""
    try:
        async with conn.transaction():
            await store.groups.count_ended(conn, job_ids)
    except Exception:
        log.exception("group_children_left_to_the_sweep", jobs=len(job_ids))


async def _apply_claims(conn: Any, claims: list[tuple[ClaimRequest, asyncio.Future[Claimed | Refused]]]) -> None:
    # a job claimed twice in one batch (two copies delivered at once): the first request is the claim
    first: dict[str, ClaimRequest] = {}
    for request, _ in claims:
        first.setdefault(request.job_id, request)
    granted = await store.attempts.claim(conn, list(first.values()))
    refused_ids = [request.job_id for request, _ in claims if request.job_id not in granted]
    statuses = await store.attempts.statuses(conn, refused_ids) if refused_ids else {}
    for request, done in claims:
        if done.done():
            continue
        claimed = granted.get(request.job_id) if first[request.job_id] is request else None
        done.set_result(claimed if claimed is not None else Refused(status=statuses.get(request.job_id)))


def _sorted(events: list[tuple[Event, asyncio.Future[Any]]]) -> _Batch:
    batch = _Batch()
    for event, done in events:
        if isinstance(event, ClaimRequest):
            batch.claims.append((event, done))
        elif isinstance(event, AttemptFinished):
            batch.finishes.append((event, done))
        else:
            batch.releases.append((event, done))
    return batch


def _answer(events: list[tuple[Any, asyncio.Future[bool]]], applied: Any) -> None:
    for event, done in events:
        if not done.done():
            done.set_result(bool(applied(event)))


def _fail(events: list[tuple[Any, asyncio.Future[Any]]], error: BaseException) -> None:
    for _, done in events:
        if not done.done():
            done.set_exception(error)
