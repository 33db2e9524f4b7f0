"""Poisoned records in Redis against a real `arq` process: each ends dead with its reason, the worker lives on."""

from __future__ import annotations

from pathlib import Path

import pytest

from millrace import JobClient, NoArgs, Pool, store
from tests.processes import processes, wait_for
from tests.sample import app
from tests.test_payloads import POISONED, plant

pytestmark = pytest.mark.e2e

#: the poisons that stopped a worker process (a wrong type in arq's fields) or that arq failed on its own
CASES = [
    "t as text",
    "et as text",
    "a result record's keys with t as text",
    "a not a list",
    "k not a dict",
    "deep nesting",
    "a number no column takes",
    "not JSON",
]


async def test_a_real_worker_survives_poisoned_records_and_runs_the_next_job(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    job_ids = {case: f"poison-{n}" for n, case in enumerate(CASES)}
    for case, job_id in job_ids.items():
        await plant(redis_url, job_id, POISONED[case][0])
    async with processes(database_url, redis_url, tmp_path) as start:
        worker = start("arq", "tests.sample.worker.NoCronWorker")

        async def all_dead() -> bool:
            assert worker.popen.poll() is None, worker.output()
            dead = await store.jobs.list_jobs(pool, status="dead", limit=100)
            return {job.id for job in dead} == set(job_ids.values())

        await wait_for(all_dead, timeout_s=30, what="every poisoned job to end dead")
        normal = await client.enqueue(app.NOOP, NoArgs())

        async def succeeded() -> bool:
            return (await store.jobs.get_job(pool, normal.id)).status == "succeeded"

        await wait_for(succeeded, timeout_s=30, what="a normal job after the poison")
        assert worker.popen.poll() is None, worker.output()

    for case, job_id in job_ids.items():
        job = await store.jobs.get_job(pool, job_id)
        assert (job.status, job.last_error_type) == ("dead", "CorruptPayload"), case
        assert POISONED[case][1] in (job.last_error or ""), case
