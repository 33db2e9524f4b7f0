"""Progress a job reports: kept with its record, written in batches, fenced by the attempt's lease."""

from __future__ import annotations

import pytest

from millrace import TRANSIENT_ERRORS, JobClient, NoArgs, Pool, store
from millrace.progress import ProgressWriter
from millrace.runtime import runtime_of
from tests.conftest import RunWorker
from tests.sample import app
from tests.servers import free_port


async def test_progress_reported_after_every_row_is_kept_in_a_few_writes(
    client: JobClient, run_worker: RunWorker, pool: Pool
) -> None:
    enqueued = await client.enqueue(app.COUNT_ROWS, app.CountArgs(rows=20_000, seconds=1.0))
    worker = await run_worker(progress_interval_s=0.2)
    record = await store.jobs.get_job(pool, enqueued.id)
    assert record.status == "succeeded"
    assert record.progress is not None
    assert (record.progress.done, record.progress.total, record.progress.message) == (20_000, 20_000, "row 20000")
    # 20,000 reports over about a second: a handful of statements, not one per report
    assert runtime_of(worker.ctx).progress.writes <= 10


async def test_a_job_that_never_reports_has_no_progress(client: JobClient, run_worker: RunWorker, pool: Pool) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    await run_worker()
    assert (await store.jobs.get_job(pool, enqueued.id)).progress is None


async def test_a_report_under_an_old_lease_is_not_written(client: JobClient, pool: Pool) -> None:
    enqueued = await client.enqueue(app.NOOP, NoArgs())
    lease = await pool.fetchval("SELECT lease FROM millrace_jobs WHERE id = $1", enqueued.id)
    writer = ProgressWriter(pool)
    writer.note(enqueued.id, lease - 1, 5, 10, "from an attempt that lost the job")
    writer.note("no-such-job", 0, 1, 1, None)
    await writer.flush()
    assert (await store.jobs.get_job(pool, enqueued.id)).progress is None
    writer.note(enqueued.id, lease, 7, None, "x" * 10_000 + "\\x00")
    await writer.flush()
    progress = (await store.jobs.get_job(pool, enqueued.id)).progress
    assert progress is not None
    assert (progress.done, progress.total) == (7, None)
    assert progress.message is not None
    assert len(progress.message) <= 500


async def test_reports_wait_while_postgres_is_away(client: JobClient) -> None:
    nowhere = await store.pool.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/none", min_size=0)
    writer = ProgressWriter(nowhere)
    writer.note("job-1", 1, 3, 9, "before the outage")
    with pytest.raises(TRANSIENT_ERRORS):
        await writer.flush()
    writer.note("job-1", 1, 4, 9, "during it")
    assert writer.unwritten() == {("job-1", 1): (4, 9, "during it")}
    await nowhere.close()
