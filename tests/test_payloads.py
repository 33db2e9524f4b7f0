"""Bad input loses nothing and crashes nothing: refused at enqueue, or dead with a clear error."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio
from arq.constants import job_key_prefix

from millrace import Pool, payload, store
from millrace.client import JobClient
from millrace.errors import InvalidJobArguments
from tests.conftest import RunWorker
from tests.sample import app


async def test_invalid_arguments_are_refused_at_enqueue_naming_the_field(
    client: JobClient, pool: Pool, redis_url: str
) -> None:
    with pytest.raises(InvalidJobArguments, match=r"fail_times: Input should be a valid integer") as refused:
        app.FLAKY.validate({"fail_times": "many"})  # JSON, as the CLI and the worker read it
    assert refused.value.function == "flaky"
    typo: dict[str, Any] = {"fail_times": 1, "surprise": True}
    with pytest.raises(InvalidJobArguments, match=r"surprise: Extra inputs are not permitted"):
        await client.enqueue(app.FLAKY, app.FlakyArgs(**typo))  # a producer mypy could not check
    with pytest.raises(InvalidJobArguments, match=r"note: text contains a NUL character"):
        await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0, note="a\x00b"))
    with pytest.raises(InvalidJobArguments, match=r"note: text contains a lone surrogate"):
        await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0, note="\ud800"))
    assert await store.jobs.list_jobs(pool) == []
    assert await client.redis.zcard(app.TESTQ.redis_key) == 0


async def plant(redis_url: str, job_id: str, raw: bytes) -> None:
    """Put bytes into Redis where arq looks for a job: what a bug or a hand edit might leave there."""
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(job_key_prefix + job_id, raw)
    await client.zadd(app.TESTQ.redis_key, {job_id: 1})
    await client.aclose()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x80\x04\x95garbage", "not JSON"),
        (b'{"hello": "world"}', "not an arq job record"),
        (payload.serialize_job("no_such_job", [], 0), "no job named 'no_such_job'"),
        (payload.serialize_job("noop", ["not an envelope"], 0), "not a Millrace envelope"),
    ],
)
async def test_corrupt_payload_ends_dead_with_a_clear_error(
    pool: Pool, redis_url: str, run_worker: RunWorker, raw: bytes, reason: str
) -> None:
    await plant(redis_url, "planted", raw)
    await run_worker()  # returns: the queue is empty, no crash loop and no endless retry
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, "planted")
        attempts = await store.jobs.list_attempts(conn, "planted")
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "CorruptPayload")
    assert reason in (job.last_error or "")
    assert [a.outcome for a in attempts] == ["dead"]


async def test_arguments_corrupted_in_redis_end_dead_naming_the_field(
    client: JobClient, pool: Pool, redis_url: str, run_worker: RunWorker
) -> None:
    envelope = payload.make_envelope("tampered", {"fail_times": "many"}, 0)
    await plant(redis_url, "tampered", payload.serialize_job("flaky", [envelope], 0))
    await run_worker()
    async with pool.acquire() as conn:
        job = await store.jobs.get_job(conn, "tampered")
    assert (job.status, job.attempts, job.last_error_type) == ("dead", 1, "InvalidJobArguments")
    assert "fail_times: Input should be a valid integer" in (job.last_error or "")
