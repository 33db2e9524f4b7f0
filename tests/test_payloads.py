"""Bad input loses nothing and crashes nothing: refused at enqueue, or dead with a clear error.

The worker's deserializer is the gate between Redis and arq. Whatever it is fed it never raises, and what
it returns either is a record arq and Millrace's wrapper can run (checked here by replaying what arq's
`run_job` does with it, independently of the deserializer's own checks), or one of arq's result records
arq can read back, or a call of the corrupt-payload handler with a reason, so that the job ends dead.
"""

from __future__ import annotations

import inspect
import json
import zoneinfo
from collections.abc import Callable
from typing import Any

import arq.worker
import pytest
import redis.asyncio
from arq.constants import job_key_prefix
from arq.cron import CronJob
from arq.jobs import deserialize_result, serialize_result
from arq.utils import args_to_string, ms_to_datetime
from hypothesis import event, given, settings
from hypothesis import strategies as st

from millrace import Pool, execution, payload, store
from millrace.client import JobClient
from millrace.errors import CorruptPayload, InvalidJobArguments
from millrace.payload import CORRUPT_FUNCTION
from millrace.text import unstorable_text
from tests.conftest import ADMIN_DATABASE_URL, REDIS_SERVER_URL, RunWorker, sample_worker_settings
from tests.sample import app

#: the sample application's arq settings, crons included, as arq reads them: attribute by attribute
_ARQ_SETTINGS = vars(sample_worker_settings(REDIS_SERVER_URL, ADMIN_DATABASE_URL, with_crons=True))
load: Callable[[bytes], Any] = _ARQ_SETTINGS["job_deserializer"]
FUNCTIONS: dict[str, arq.worker.Function | CronJob] = {
    f.name: f for f in _ARQ_SETTINGS["functions"] + _ARQ_SETTINGS["cron_jobs"]
}
JOB_NAMES = sorted(name for name in FUNCTIONS if name != CORRUPT_FUNCTION and not name.startswith("cron:"))
#: arq.worker.Worker's max_tries, for a function that sets none (the corrupt-payload handler)
ARQ_DEFAULT_MAX_TRIES: int = inspect.signature(arq.worker.Worker).parameters["max_tries"].default


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


def noop_record(**fields: Any) -> bytes:
    """A job record of `noop` for the record `planted`, with some of arq's fields replaced."""
    good: dict[str, Any] = {"t": None, "f": "noop", "a": [payload.make_envelope("planted", {}, 0)], "k": {}, "et": 1}
    return json.dumps({**good, **fields}).encode()


def nested(depth: int) -> Any:
    return [] if depth == 0 else [nested(depth - 1)]


#: poisoned records, each with the words its job's record must end dead with
POISONED: dict[str, tuple[bytes, str]] = {
    "t as text": (noop_record(t="3"), "try count (t) '3' is not null or a whole number"),
    "t as a boolean": (noop_record(t=True), "try count (t) True is not null or a whole number"),
    "t past arq's max tries": (noop_record(t=5000), "try count (t) 5000 is not null or a whole number up to 1000"),
    "et as text": (noop_record(et="yesterday"), "enqueue time (et) 'yesterday' is not a time in milliseconds"),
    "et past year 9999": (noop_record(et=10**20), "enqueue time (et) 100000000000000000000 is not a time"),
    "a not a list": (noop_record(a="abc"), "arguments (a) are 'abc', not a list"),
    "k not a dict": (noop_record(k=[1]), "keyword arguments (k) are an array, not an empty object"),
    "k not empty": (noop_record(k={"x": 1}), "keyword arguments (k) are an object, not an empty object"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "JSON nested too deep to read"),
    "nesting in the arguments": (
        noop_record(a=[payload.make_envelope("planted", {"x": nested(100)}, 0)]),
        "the envelope cannot be stored: nested deeper than 64 levels",
    ),
    "a number no column takes": (
        noop_record(a=[payload.make_envelope("planted", {"x": 0.5}, 0)]).replace(b"0.5", b"1e400"),
        "number 1e400 is out of range",
    ),
    "not JSON": (b"\x80\x04\x95garbage", "not JSON"),
    "larger than the cap": (b" " * (payload.MAX_RECORD_BYTES + 1), f"larger than {payload.MAX_RECORD_BYTES} bytes"),
    "a result record's keys with t as text": (
        noop_record(t="3", s=True, r=None, st=1, ft=1, q="testq", id="planted"),
        "arq result record with unreadable t",
    ),
}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        *POISONED.values(),
        (b'{"hello": "world"}', "not an arq job record"),
        (payload.serialize_job("no_such_job", [], 0), "no job named 'no_such_job'"),
        (payload.serialize_job("noop", ["not an envelope"], 0), "not a Millrace envelope"),
    ],
    ids=[*POISONED, "not arq's record", "unknown function", "not an envelope"],
)
async def test_corrupt_payload_ends_dead_with_a_clear_error(
    pool: Pool, redis_url: str, run_worker: RunWorker, raw: bytes, reason: str
) -> None:
    await plant(redis_url, "planted", raw)
    await run_worker()  # returns: the queue is empty, no crash and no endless retry
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


def replay_arq_reading(record: dict[str, Any]) -> int:
    """What arq's run_job does with every field of a deserialized record; the try it will run."""
    enqueue_job_try = record["t"]
    job_try: int = enqueue_job_try if enqueue_job_try and enqueue_job_try > 1 else 1
    ms_to_datetime(record["et"])
    args_to_string(record["a"], record["k"])
    return job_try


def replay_run_job(record: dict[str, Any]) -> None:
    """What arq's run_job does with a deserialized job record up to the call, then the wrapper's reading."""
    function_name, args, kwargs = record["f"], record["a"], record["k"]
    function = FUNCTIONS[function_name]
    assert replay_arq_reading(record) <= (function.max_tries or ARQ_DEFAULT_MAX_TRIES)
    inspect.signature(function.coroutine).bind({}, *args, **kwargs)
    if function_name == CORRUPT_FUNCTION:  # execution.handle_corrupt
        reason, preview = args
        assert reason
        assert unstorable_text(str(CorruptPayload(reason, preview.encode()))) is None
    elif not function_name.startswith("cron:"):  # execution.job_handler
        envelope = payload.read_envelope(args[0])
        json.dumps(envelope.args, allow_nan=False)  # jsonb takes no NaN or Infinity


def replay_result_reading(raw: bytes, record: dict[str, Any]) -> None:
    """arq reads a result record back (Job.result_info); found where a job should be, run_job reads it too."""
    deserialize_result(raw, deserializer=load)
    assert isinstance(record["f"], str)  # arq looks it up among its functions
    replay_arq_reading(record)


def run_or_routed(raw: bytes) -> None:
    """The property: loading never raises, and gives a runnable record, a readable result or a routed call."""
    record = load(raw)
    assert isinstance(record, dict)
    if record.get("f") != CORRUPT_FUNCTION:
        assert record == json.loads(raw), "accepted records pass unchanged"
    if "s" in record:
        event("a result record")
        replay_result_reading(raw, record)
    else:
        event("routed" if record["f"] == CORRUPT_FUNCTION else "a job record")
        replay_run_job(record)


STORABLE_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
STORABLE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | STORABLE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STORABLE_TEXT, inner, max_size=3),
    max_leaves=10,
)
#: any JSON value, NaN, infinities, NUL characters and lone surrogates included
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
JOB_TRIES = st.none() | st.integers(0, payload.MAX_JOB_TRY)
ENQUEUE_TIMES = st.integers(0, payload.MAX_ENQUEUE_TIME_MS)


def job_record(function: str, args: list[Any], job_try: int | None, enqueue_time_ms: int) -> dict[str, Any]:
    return {"t": job_try, "f": function, "a": args, "k": {}, "et": enqueue_time_ms}


ENVELOPES = st.builds(
    payload.make_envelope,
    STORABLE_TEXT.filter(bool),
    st.dictionaries(STORABLE_TEXT, STORABLE_VALUES, max_size=4),
    st.integers(0, 1000),
)
#: records a worker of the sample application runs: its jobs, its cron, and calls of the corrupt handler
WELL_FORMED = st.one_of(
    st.builds(
        job_record, st.sampled_from(JOB_NAMES), st.lists(ENVELOPES, min_size=1, max_size=1), JOB_TRIES, ENQUEUE_TIMES
    ),
    st.builds(job_record, st.just("cron:every_second"), st.just([]), JOB_TRIES, ENQUEUE_TIMES),
    st.builds(
        job_record,
        st.just(CORRUPT_FUNCTION),
        st.lists(STORABLE_TEXT.filter(bool), min_size=2, max_size=2),
        st.none(),
        ENQUEUE_TIMES,
    ),
)
ARQ_RESULTS = st.builds(
    lambda record, success, result, times: {
        **record,
        "s": success,
        "r": result,
        "st": times[0],
        "ft": times[1],
        "q": "testq",
        "id": "x",
    },
    WELL_FORMED,
    st.booleans(),
    JSON_VALUES,
    st.tuples(ENQUEUE_TIMES, ENQUEUE_TIMES),
)


def containers(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record and, when it has one, its envelope: the objects whose fields a mutation changes."""
    args = record.get("a")
    if isinstance(args, list) and args and isinstance(args[0], dict):
        return [record, args[0]]
    return [record]


@st.composite
def mutated(draw: st.DrawFn, records: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """A record with up to three fields (arq's or the envelope's) given any JSON value, removed or added."""
    record = draw(records)
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(containers(record)))
        key = draw(st.sampled_from(sorted(target)) if target and draw(st.booleans()) else st.text(max_size=3))
        if draw(st.booleans()):
            target[key] = draw(JSON_VALUES)
        else:
            target.pop(key, None)
    return json.dumps(record).encode()


GOOD_RAW = payload.serialize_job("flaky", [payload.make_envelope("r1", {"fail_times": 0}, 0)], 1)
SPLICED = st.builds(
    lambda at, cut, insert: GOOD_RAW[:at] + insert + GOOD_RAW[at + cut :],
    st.integers(0, len(GOOD_RAW)),
    st.integers(0, 4),
    st.binary(max_size=4),
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | SPLICED)
def test_arbitrary_bytes_are_run_or_routed(raw: bytes) -> None:
    run_or_routed(raw)


@settings(max_examples=600, deadline=None)
@given(mutated(WELL_FORMED | ARQ_RESULTS))
def test_records_shaped_like_arqs_with_any_field_of_any_type_are_run_or_routed(raw: bytes) -> None:
    run_or_routed(raw)


@settings(max_examples=200, deadline=None)
@given(WELL_FORMED)
def test_well_formed_records_pass_unchanged(record: dict[str, Any]) -> None:
    assert load(json.dumps(record).encode()) == record
    replay_run_job(record)


@pytest.mark.parametrize(
    ("function", "args", "success", "result"),
    [
        ("flaky", [payload.make_envelope("r1", {"fail_times": 0}, 0)], True, None),
        ("<unknown>", [], False, ValueError("job expired")),  # what DroppedJobs hears of
    ],
)
def test_arqs_own_result_records_read_back_unchanged(
    function: str, args: list[Any], success: bool, result: Any
) -> None:
    raw = serialize_result(
        function, tuple(args), {}, 2, 1, success, result, 3, 4, "ref", "testq", "job-1", serializer=payload.dumps
    )
    assert raw is not None
    read = deserialize_result(raw, deserializer=load)
    assert (read.function, list(read.args), read.success, read.job_try) == (function, args, success, 2)
    assert read.result == (None if result is None else repr(result))


def test_the_try_bound_is_the_max_tries_millrace_gives_arq() -> None:
    assert payload.MAX_JOB_TRY == execution.ARQ_MAX_TRIES


def test_the_latest_enqueue_time_is_a_datetime_in_every_zone() -> None:
    """arq moves enqueue times into the zone of $TZ (with pytz installed); no zone may overflow year 9999."""
    latest = ms_to_datetime(payload.MAX_ENQUEUE_TIME_MS)
    zones = zoneinfo.available_timezones()
    assert "Pacific/Kiritimati" in zones  # UTC+14, the furthest ahead
    for zone in sorted(zones):
        latest.astimezone(zoneinfo.ZoneInfo(zone))
