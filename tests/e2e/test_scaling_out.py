"""Scaling out: more `arq` processes against one Redis and one PostgreSQL share a queue's work, while the
caps and rate limits that hold across processes still hold. (How much faster they go is a benchmark's
question: `python -m bench.peers` measures one worker process against two.)"""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest

from millrace import JobClient, Pool
from tests.chaos.harness import wait_all_final
from tests.processes import processes
from tests.providers import provider_server
from tests.sample import app

pytestmark = pytest.mark.e2e

WORKERS = 3


async def test_three_worker_processes_share_the_queue_and_hold_the_cap_and_the_rate(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with provider_server() as providers:
        providers.hang("slack", 0.1)  # each capped call takes 0.1 s
        for _ in range(60):
            await client.enqueue(app.CAPPED_CALL, app.CallArgs(url=providers.url("slack")))
        for _ in range(40):
            await client.enqueue(app.CALL_PROVIDER, app.CallArgs(url=providers.url("sms")))
        for _ in range(60):
            await client.enqueue(app.TENANT_WORK, app.TenantArgs(tenant="a", seconds=0.05))
        async with processes(database_url, redis_url, tmp_path) as start:
            for _ in range(WORKERS):
                start("arq", "tests.sample.worker.NoCronWorker")
            await wait_all_final(pool, 160, timeout_s=90)
        assert providers.max_in_flight["slack"] == app.PROVIDER_CAP.limit
        sms_sent = sorted(t for provider, t in providers.sent if provider == "sms")
    limit = app.PROVIDER_LIMIT
    # the limit spaces starts one interval apart, across every process (a start may be half its margin late)
    assert len(sms_sent) == 40
    assert sms_sent[-1] - sms_sent[0] >= 39 * limit.per_s / limit.calls - 0.1
    busiest = max(bisect.bisect_left(sms_sent, t + limit.per_s) - i for i, t in enumerate(sms_sent))
    assert busiest <= limit.calls + 1, busiest
    statuses = await pool.fetch("SELECT status, counted_attempts FROM millrace_jobs")
    assert {(r["status"], r["counted_attempts"]) for r in statuses} == {("succeeded", 1)}
    workers = await pool.fetchval("SELECT count(DISTINCT worker) FROM millrace_job_attempts")
    assert workers == WORKERS  # every process took its share
