"""Direct enqueues from concurrent callers share one INSERT and one Redis call, and lose none of what each
caller would have had alone: its own id, its job key's answer, its own error."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

from millrace import NoArgs, Pool, relay, store
from millrace.client import EnqueuedJob, JobClient, new_job
from millrace.group_commit import GroupCommit
from tests.conftest import RunWorker, effects
from tests.sample import app
from tests.servers import PrivateRedis


async def queued_ids(redis_url: str) -> set[str]:
    client = redis.asyncio.Redis.from_url(redis_url)
    ids: list[bytes] = await client.zrange(app.TESTQ.redis_key, 0, -1)
    await client.aclose()
    return {i.decode() for i in ids}


async def test_concurrent_enqueues_share_batches(client: JobClient, pool: Pool, redis_url: str) -> None:
    enqueued = await asyncio.gather(*(client.enqueue(app.SLEEPY, app.SleepArgs(seconds=n)) for n in range(300)))
    ids = [e.id for e in enqueued]
    assert len(set(ids)) == 300
    assert all(e.created and e.via == "redis" for e in enqueued)
    assert client.direct.items_written == 300
    assert client.direct.batches_written <= 3  # the first turn's callers share the first batch
    assert {j.id for j in await store.jobs.list_jobs(pool, limit=1000)} == set(ids)
    assert await queued_ids(redis_url) == set(ids)
    # each caller got its own job back: the arguments it gave are the ones its id carries
    for n, job_id in enumerate(ids):
        record = await client.find_job(job_id)
        assert record is not None
        assert record.args == {"seconds": n}


async def test_a_lone_enqueue_goes_out_at_once(client: JobClient) -> None:
    await client.enqueue(app.NOOP, NoArgs())
    await client.enqueue(app.NOOP, NoArgs())
    assert client.direct.batches_written == 2


async def test_a_job_postgresql_refuses_fails_only_its_caller(client: JobClient, pool: Pool, redis_url: str) -> None:
    # JobClient.enqueue refuses a job key PostgreSQL cannot store before it is written (below); a job built
    # past that check stands for whatever else PostgreSQL might refuse: it spoils the batch's statement
    bad = dataclasses.replace(new_job(app.NOOP, NoArgs()), job_key="a\x00b")
    calls = [client.enqueue(app.NOOP, NoArgs()) for _ in range(5)]
    calls.insert(2, client._enqueue(bad, None, client._answer_by()))  # enqueue's own path, past its checks
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[2], asyncpg.PostgresError)
    fine = [o.id for o in outcomes if isinstance(o, EnqueuedJob)]
    assert len(fine) == 5
    assert await queued_ids(redis_url) == set(fine)
    assert {j.id for j in await store.jobs.list_jobs(pool)} == set(fine)


@pytest.mark.parametrize(
    ("job_key", "problem"),
    [("a\x00b", "NUL"), ("\ud800", "surrogate"), ("k" * 501, "longer than 500"), ("", "non-empty")],
)
async def test_a_job_key_postgresql_cannot_store_is_refused_before_the_write(
    client: JobClient, pool: Pool, job_key: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        await client.enqueue(app.NOOP, NoArgs(), job_key=job_key)
    assert await store.jobs.list_jobs(pool) == []
    assert (await client.enqueue(app.NOOP, NoArgs(), job_key="k" * 500)).created


async def test_one_job_key_in_a_batch_gives_one_pending_job(client: JobClient, pool: Pool) -> None:
    enqueued = await asyncio.gather(
        *(client.enqueue(app.NOOP, NoArgs(), job_key="nightly-report") for _ in range(20)),
        client.enqueue(app.NOOP, NoArgs(), job_key="other"),
    )
    same_key = enqueued[:20]
    assert len({e.id for e in same_key}) == 1
    assert [e.created for e in same_key].count(True) == 1
    assert enqueued[20].created
    assert enqueued[20].id != same_key[0].id
    assert len(await store.jobs.list_jobs(pool)) == 2


async def test_a_batch_with_redis_down_waits_in_the_outbox(pool: Pool, tmp_path: Path, run_worker: RunWorker) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        async with JobClient.open(redis_url=server.url, pool=pool) as client:
            server.stop()
            enqueued = await asyncio.gather(
                *(client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0)) for _ in range(30))
            )
            assert {e.via for e in enqueued} == {"outbox"}
            assert client.direct.batches_written < 30
            server.start()
            assert await relay.deliver_all(pool, client.redis, None) == 30
        await run_worker(redis_url=server.url)
    finally:
        server.stop()
    assert sorted(r["job_id"] for r in await effects(pool, "ran")) == sorted(e.id for e in enqueued)


async def test_postgresql_away_fails_every_caller_of_the_batch(redis_url: str, database_url: str) -> None:
    pool = await store.pool.create_pool(database_url)
    async with JobClient.open(redis_url=redis_url, pool=pool) as client:
        await pool.close()
        outcomes = await asyncio.gather(
            *(client.enqueue(app.NOOP, NoArgs()) for _ in range(10)), return_exceptions=True
        )
    assert all(isinstance(o, asyncpg.InterfaceError) for o in outcomes)
    assert await queued_ids(redis_url) == set()


async def test_a_caller_cancelled_before_its_batch_leaves_nothing_and_spoils_nothing() -> None:
    written: list[list[int]] = []
    gate = asyncio.Event()

    async def write(batch: list[int]) -> list[int]:
        await gate.wait()
        written.append(batch)
        return [n * 10 for n in batch]

    commits: GroupCommit[int, int] = GroupCommit(write)
    first = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0)  # the first batch is in flight
    rest = [asyncio.create_task(commits.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    rest[1].cancel()  # waits behind the batch in flight: not written
    first.cancel()  # its batch is being written: it goes out all the same
    gate.set()
    assert [await rest[0], await rest[2]] == [20, 40]
    assert written == [[1], [2, 4]]
    await commits.drain()


async def test_the_writing_task_does_not_carry_the_first_callers_context() -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    seen: list[str] = []

    async def write(batch: list[int]) -> list[int]:
        seen.append(request_id.get())
        return batch

    commits: GroupCommit[int, int] = GroupCommit(write)
    request_id.set("first caller's")
    await commits.submit(1)
    assert seen == ["none"]


async def test_a_write_that_raises_answers_every_caller_and_the_next_batch_goes_on() -> None:
    async def write(batch: list[int]) -> list[int]:
        if 0 in batch:
            raise ConnectionError("away")
        return batch

    commits: GroupCommit[int, int] = GroupCommit(write)
    failing = asyncio.gather(*(commits.submit(n) for n in (0, 1)), return_exceptions=True)
    assert [type(o) for o in await failing] == [ConnectionError, ConnectionError]
    assert await commits.submit(7) == 7


@pytest.mark.parametrize("size", [1, 2, 500, 501])
async def test_batches_are_bounded(size: int) -> None:
    sizes: list[int] = []

    async def write(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        return batch

    commits: GroupCommit[int, int] = GroupCommit(write, max_batch=500)
    assert await asyncio.gather(*(commits.submit(n) for n in range(size))) == list(range(size))
    assert max(sizes) <= 500
    assert sum(sizes) == size


def test_a_new_event_loop_is_served_and_what_the_old_one_left_is_dropped() -> None:
    """A client outliving its loop (a script's asyncio.run calls one after another, a test's loop each):
    the next loop's callers are answered, and items the old loop's callers left waiting are not written,
    neither by the new loop's writer nor by the old one's if that loop runs again."""
    written: list[list[str]] = []
    stuck = asyncio.Event()

    async def write(batch: list[str]) -> list[str]:
        written.append(batch)
        if "old, in flight" in batch:
            await stuck.wait()  # the old loop stops with this write under way
        return batch

    commits: GroupCommit[str, str] = GroupCommit(write)
    old_loop = asyncio.new_event_loop()
    old = [old_loop.create_task(commits.submit("old, in flight"))]
    old_loop.run_until_complete(asyncio.sleep(0.01))  # its batch is being written
    old.append(old_loop.create_task(commits.submit("old, waiting")))
    old_loop.run_until_complete(asyncio.sleep(0.01))  # behind it, not taken

    assert asyncio.run(asyncio.wait_for(commits.submit("new"), 5.0)) == "new"
    assert written == [["old, in flight"], ["new"]]

    old_loop.call_soon(stuck.set)  # the old loop runs again: its write ends, and its writer stops there
    old_loop.run_until_complete(asyncio.wait(old, timeout=0.1))
    assert old[0].result() == "old, in flight"
    assert not old[1].done()
    assert written == [["old, in flight"], ["new"]]
    old[1].cancel()
    old_loop.run_until_complete(asyncio.gather(*old, return_exceptions=True))
    old_loop.close()
