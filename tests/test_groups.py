"""Fan-out and fan-in: the follow-up of a group runs once, when its last child has ended, even when the
last two end at the same moment."""

from __future__ import annotations

import asyncio

from millrace import JobClient, NoArgs, Pool, store
from millrace.reconcile import count_group_children
from tests.conftest import RunWorker, effects
from tests.sample import app


async def group_of(client: JobClient, pool: Pool, children: int, label: str = "g") -> tuple[str, list[str]]:
    async with pool.acquire() as conn, conn.transaction():
        group = await client.enqueue_group(
            app.NOOP, [NoArgs()] * children, then=(app.GROUP_DONE, app.LabelArgs(label=label)), conn=conn
        )
    return group.id, group.children


async def follow_ups(pool: Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM millrace_jobs WHERE function = 'group_done'"))


async def test_the_follow_up_runs_once_after_every_child(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    _, children = await group_of(client, pool, 25)
    assert len(children) == 25
    await run_worker()
    await run_worker()  # the follow-up, enqueued by the last child's end
    assert [e["kind"] for e in await effects(pool)] == ["then:g"]
    group = await pool.fetchrow("SELECT remaining, completed_at, then_job_id FROM millrace_job_groups")
    assert group is not None
    assert group["remaining"] == 0
    assert group["completed_at"] is not None
    assert (await store.jobs.get_job(pool, group["then_job_id"])).status == "succeeded"


async def test_a_group_without_children_runs_its_follow_up_at_once(
    client: JobClient, pool: Pool, run_worker: RunWorker
) -> None:
    await group_of(client, pool, 0)
    await run_worker()
    assert [e["kind"] for e in await effects(pool)] == ["then:g"]


async def test_a_group_whose_transaction_rolls_back_leaves_nothing(client: JobClient, pool: Pool) -> None:
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await client.enqueue_group(app.NOOP, [NoArgs()] * 3, then=(app.GROUP_DONE, app.LabelArgs(label="x")), conn=conn)
        await transaction.rollback()
    assert await pool.fetchval("SELECT count(*) FROM millrace_jobs") == 0
    assert await pool.fetchval("SELECT count(*) FROM millrace_job_groups") == 0


async def test_the_last_two_children_ending_at_once_enqueue_one_follow_up(client: JobClient, pool: Pool) -> None:
    for round_ in range(30):
        group_id, (first, second) = await group_of(client, pool, 2, label=str(round_))
        await pool.execute("UPDATE millrace_jobs SET status = 'succeeded' WHERE group_id = $1", group_id)

        async def end(child: str) -> int:
            async with pool.acquire() as conn, conn.transaction():
                return await store.groups.count_ended(conn, [child])

        assert sorted(await asyncio.gather(end(first), end(second))) == [0, 1]
        assert sorted(await asyncio.gather(end(first), end(second))) == [0, 0]  # each child counts once
    assert await follow_ups(pool) == 30


async def test_cancelled_and_dead_children_count_as_ended(client: JobClient, pool: Pool, run_worker: RunWorker) -> None:
    async with pool.acquire() as conn, conn.transaction():
        group = await client.enqueue_group(
            app.FLAKY,
            [app.FlakyArgs(fail_times=0), app.FlakyArgs(fail_times=99), app.FlakyArgs(fail_times=0)],
            then=(app.GROUP_DONE, app.LabelArgs(label="mixed")),
            conn=conn,
        )
    assert await client.cancel(group.children[2]) == "cancelled"
    await run_worker()
    await run_worker()
    statuses = [(await store.jobs.get_job(pool, child)).status for child in group.children]
    assert statuses == ["succeeded", "dead", "cancelled"]
    assert [e["kind"] for e in await effects(pool, "then:mixed")] == ["then:mixed"]


async def test_a_child_ended_outside_a_worker_is_counted_by_the_sweep(client: JobClient, pool: Pool) -> None:
    group_id, _ = await group_of(client, pool, 2)
    await pool.execute("UPDATE millrace_jobs SET status = 'dead' WHERE group_id = $1", group_id)
    assert await count_group_children(pool) == 1
    assert await count_group_children(pool) == 0
    assert await follow_ups(pool) == 1
