"""Workers that die, freeze, block their loop or get deployed, against real `arq` processes: every job
reaches one final state, within its policy's attempts, and no guarded effect happens twice."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from pathlib import Path

import pytest

from millrace import JobClient, NoArgs, Pool, store
from millrace.records import JobRecord
from tests.conftest import effects
from tests.processes import Process, Supervisor, processes, wait_for
from tests.sample import app

pytestmark = pytest.mark.e2e
#: the promise of the issue: a dead worker's job runs elsewhere within this long, whatever its timeout
HAND_ON_BOUND_S = 15


async def job(pool: Pool, job_id: str) -> JobRecord:
    return await store.jobs.get_job(pool, job_id)


async def holder(pool: Pool, job_id: str, workers: list[Process]) -> Process:
    """The worker process running `job_id`, from its record."""

    async def held() -> bool:
        record = await job(pool, job_id)
        return record.status == "in_progress" and record.worker is not None

    await wait_for(held, timeout_s=20, what=f"{job_id} to start")
    worker = (await job(pool, job_id)).worker
    assert worker is not None
    return next(w for w in workers if f":{w.pid}:" in worker)


async def status_is(pool: Pool, job_id: str, status: str, *, timeout_s: float, what: str) -> None:
    async def reached() -> bool:
        return (await job(pool, job_id)).status == status

    await wait_for(reached, timeout_s=timeout_s, what=what)


async def test_a_killed_workers_job_runs_elsewhere_within_15_s_not_after_arqs_timeout(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """GUARDED's timeout is 30 s: arq alone would wait 42 s for its in-progress mark to expire."""
    async with processes(database_url, redis_url, tmp_path) as start:
        workers = [start("arq", "tests.sample.worker.ShippedTimingWorker") for _ in range(2)]
        # the bound counts from the kill with the survivor up: a worker slow to start (a loaded machine
        # takes seconds to import it) would add its start-up to the hand-on
        await wait_for(functools.partial(_live_workers, pool, 2), timeout_s=30, what="both workers to register")
        enqueued = await client.enqueue(app.GUARDED, app.SleepArgs(seconds=1))
        victim = await holder(pool, enqueued.id, workers)
        victim.kill()
        killed_at = time.monotonic()

        async def second_attempt_started() -> bool:
            return len(await effects(pool, "start")) == 2

        try:
            await wait_for(second_attempt_started, timeout_s=HAND_ON_BOUND_S, what="the job to run on the other worker")
        except AssertionError as error:
            logs = "\n".join(f"--- worker {w.pid}\n{w.output()[-6000:]}" for w in workers)
            raise AssertionError(f"{error}\n{logs}") from None
        handed_on_s = time.monotonic() - killed_at
        await status_is(pool, enqueued.id, "succeeded", timeout_s=10, what="the job to succeed")
    print(f"\nhanded on {handed_on_s:.1f} s after SIGKILL (shipped settings; bare arq: 42 s for this job)")
    attempts = await store.jobs.list_attempts(pool, enqueued.id)
    assert [(a.outcome, a.error_type) for a in attempts] == [("lost", "WorkerLost"), ("succeeded", None)]
    assert len(await pool.fetch("SELECT 1 FROM test_guarded_effects")) == 1


async def test_a_frozen_worker_that_wakes_up_is_fenced_off(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """SIGSTOP mid-job, as a long GC pause or a stalled VM: the job goes on elsewhere, and when the frozen
    worker wakes up and finishes its body, its guarded effect and its record write are refused."""
    async with processes(database_url, redis_url, tmp_path) as start:
        workers = [start("arq", "tests.sample.worker.NoCronWorker") for _ in range(2)]
        enqueued = await client.enqueue(app.GUARDED, app.SleepArgs(seconds=2))
        frozen = await holder(pool, enqueued.id, workers)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            await status_is(pool, enqueued.id, "succeeded", timeout_s=30, what="the other worker to finish the job")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)

        async def frozen_one_finished() -> bool:
            return any(a.error_type == "LeaseLost" for a in await store.jobs.list_attempts(pool, enqueued.id))

        await wait_for(frozen_one_finished, timeout_s=20, what="the woken worker's late finish to be refused")
        assert frozen.popen.poll() is None, frozen.output()
    record = await job(pool, enqueued.id)
    assert (record.status, record.attempts) == ("succeeded", 2)
    guarded = await pool.fetch("SELECT worker FROM test_guarded_effects WHERE job_id = $1", enqueued.id)
    assert len(guarded) == 1
    assert f":{frozen.pid}:" not in guarded[0]["worker"]


async def test_deploys_hand_the_job_back_without_spending_attempts(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Three SIGTERMs in a row, each cutting the job short past a 1 s grace: it still succeeds, on one attempt."""
    enqueued = await client.enqueue(app.GUARDED, app.SleepArgs(seconds=4))  # QUICK_RETRY: 3 attempts
    async with processes(database_url, redis_url, tmp_path) as start:
        for deploy in range(3):
            worker = start("arq", "tests.sample.worker.NoCronWorker", SHUTDOWN_GRACE_S="1")
            await wait_for(functools.partial(_starts, pool, deploy + 1), timeout_s=20, what=f"start {deploy + 1}")
            worker.popen.send_signal(signal.SIGTERM)
            assert worker.popen.wait(timeout=20) == 0, worker.output()
            # Millrace cut the body at the grace, before arq's own wait could cancel it mid-finish
            assert "shutdown_grace_over" in worker.output(), worker.output()
            record = await job(pool, enqueued.id)
            assert (record.status, record.counted_attempts) == ("queued", 0), worker.output()
        start("arq", "tests.sample.worker.NoCronWorker")
        await status_is(pool, enqueued.id, "succeeded", timeout_s=30, what="the job to succeed after the deploys")
    attempts = await store.jobs.list_attempts(pool, enqueued.id)
    assert [a.outcome for a in attempts] == ["interrupted"] * 3 + ["succeeded"]
    assert (await job(pool, enqueued.id)).counted_attempts == 1


async def _live_workers(pool: Pool, n: int) -> bool:
    live: int = await pool.fetchval("SELECT count(*) FROM millrace_workers WHERE stopped_at IS NULL")
    return live >= n


async def _starts(pool: Pool, n: int) -> bool:
    return len(await effects(pool, "start")) >= n


@pytest.mark.parametrize(
    ("poison", "exit_status", "error_type"),
    [("kills its worker", -signal.SIGKILL, "WorkerLost"), ("blocks the event loop", 70, "EventLoopBlocked")],
)
async def test_a_poison_job_is_counted_in_postgresql_and_ends_dead_after_its_attempts(
    client: JobClient,
    pool: Pool,
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    poison: str,
    exit_status: int,
    error_type: str,
) -> None:
    if poison == "kills its worker":
        enqueued = await client.enqueue(app.KILL_OWN_WORKER, NoArgs())
    else:
        enqueued = await client.enqueue(app.BLOCK_LOOP, app.BlockArgs(seconds=60))
    async with (
        processes(database_url, redis_url, tmp_path) as start,
        Supervisor(start, "arq", "tests.sample.worker.NoCronWorker") as supervisor,
    ):
        await status_is(pool, enqueued.id, "dead", timeout_s=60, what="the poison to end dead")
        normal = await client.enqueue(app.NOOP, NoArgs())
        await status_is(pool, normal.id, "succeeded", timeout_s=20, what="a normal job after the poison")
    deaths = supervisor.deaths
    record = await job(pool, enqueued.id)
    attempts = await store.jobs.list_attempts(pool, enqueued.id)
    assert (record.last_error_type, record.counted_attempts) == ("AttemptsExhausted", 3)
    assert [a.outcome for a in attempts] == ["lost", "lost", "dead"]
    assert {a.error_type for a in attempts[:2]} == {error_type}
    assert deaths == [exit_status, exit_status]
    if error_type == "EventLoopBlocked":
        assert "time.sleep(args.seconds)" in (attempts[0].traceback or "")
        # the watchdog's os._exit runs no exit hook: it writes the worker's last line itself (millrace.exits)
        last = json.loads((tmp_path / "process-0.log").read_text().strip().splitlines()[-1])
        assert (last["event"], last["reason"], last["exit_status"]) == ("worker_stopped", "event_loop_blocked", 70)
