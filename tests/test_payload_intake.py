"""The worker's deserializer is the gate between Redis and arq: whatever it is fed, it never raises, and
anything unreadable becomes a call of the corrupt-payload handler, so its record ends dead with a reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from arq.constants import job_key_prefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from millrace import JobClient, Pool, store
from millrace.payload import CORRUPT_FUNCTION, make_envelope, record_problem, worker_loads
from tests.conftest import RunWorker
from tests.processes import processes, wait_for
from tests.sample import app

KNOWN = frozenset({"flaky", "noop", "cron:every_second"})
load = worker_loads(KNOWN)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
GOOD: dict[str, Any] = {"t": None, "f": "flaky", "a": [make_envelope("r1", {"fail_times": 0}, 0)], "k": {}, "et": 1}


def routed_or_accepted(result: Any) -> None:
    """Either a record the wrapper accepts, or a corrupt-payload call with a reason."""
    assert isinstance(result, dict)
    if result["f"] == CORRUPT_FUNCTION:
        reason, preview = result["a"]
        assert isinstance(reason, str)
        assert reason
        assert isinstance(preview, str)
    else:
        assert record_problem(result, KNOWN) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    routed_or_accepted(load(raw))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(GOOD)), json_values)
def test_any_field_of_arqs_record_with_any_value_never_raises(field: str, value: Any) -> None:
    routed_or_accepted(load(json.dumps({**GOOD, field: value}).encode()))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["id", "args", "base", "extra"]), json_values)
def test_any_field_of_the_envelope_with_any_value_never_raises(field: str, value: Any) -> None:
    envelope = {**make_envelope("r1", {"fail_times": 0}, 0), field: value}
    routed_or_accepted(load(json.dumps({**GOOD, "a": [envelope]}).encode()))


POISON = {
    "t as text": {**GOOD, "t": "3"},
    "et as text": {**GOOD, "et": "yesterday"},
    "et past year 9999": {**GOOD, "et": 10**20},
    "t as a boolean": {**GOOD, "t": True},
    "a not a list": {**GOOD, "a": "abc"},
    "k not a dict": {**GOOD, "k": [1]},
    "k not empty": {**GOOD, "k": {"x": 1}},
    "two envelopes": {**GOOD, "a": [GOOD["a"][0], GOOD["a"][0]]},
    "NUL in the arguments": {**GOOD, "a": [make_envelope("r1", {"fail_times": "\x00"}, 0)]},
    "a cron with arguments": {**GOOD, "f": "cron:every_second", "a": [1]},
    "the corrupt handler named": {**GOOD, "f": CORRUPT_FUNCTION, "a": ["x", 1]},
}
RAW_POISON = {
    "deep nesting": b'{"t": null, "f": "flaky", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b', "k": {}, "et": 1}',
    "NaN": b'{"t": NaN, "f": "flaky", "a": [], "k": {}, "et": 1}',
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.mark.parametrize("name", [*POISON, *RAW_POISON])
def test_each_poison_is_routed_with_a_reason(name: str) -> None:
    raw = RAW_POISON.get(name) or json.dumps(POISON[name]).encode()
    result = load(raw)
    assert result["f"] == CORRUPT_FUNCTION
    assert result["a"][0]


async def plant(redis_url: str, job_id: str, raw: bytes) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.set(job_key_prefix + job_id, raw)
    await client.zadd(app.TESTQ.redis_key, {job_id: 1})
    await client.aclose()


def poison_bytes(name: str) -> bytes:
    return RAW_POISON.get(name) or json.dumps(POISON[name]).encode()


async def test_each_poison_ends_dead_through_a_real_worker(pool: Pool, redis_url: str, run_worker: RunWorker) -> None:
    names = [*POISON, *RAW_POISON]
    for n, name in enumerate(names):
        await plant(redis_url, f"poison-{n}", poison_bytes(name))
    await run_worker()
    for n in range(len(names)):
        job = await store.jobs.get_job(pool, f"poison-{n}")
        assert (job.status, job.last_error_type) == ("dead", "CorruptPayload"), names[n]


@pytest.mark.e2e
async def test_a_real_arq_worker_survives_poison_and_goes_on(
    client: JobClient, pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    for n, name in enumerate(POISON):
        await plant(redis_url, f"poison-{n}", poison_bytes(name))
    async with processes(database_url, redis_url, tmp_path) as start:
        worker = start("arq", "tests.sample.worker.NoCronWorker")

        async def all_dead() -> bool:
            jobs = await store.jobs.list_jobs(pool, status="dead", limit=100)
            return len(jobs) == len(POISON)

        await wait_for(all_dead, timeout_s=30, what="every poisoned job to end dead")
        normal = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=0))

        async def succeeded() -> bool:
            return (await store.jobs.get_job(pool, normal.id)).status == "succeeded"

        await wait_for(succeeded, timeout_s=30, what="a normal job after the poison")
        assert worker.popen.poll() is None, worker.output()
