"""How a job travels in Redis: arq's job record as JSON, with Millrace's envelope as its one argument.

The envelope carries the record id and the attempt base, so that a dead letter retried under a new
Redis id still writes to its own record; and the trace context the job was enqueued under, if any.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from millrace import tracing
from millrace.errors import CorruptPayload
from millrace.text import unstorable_text

#: arq function name a worker routes unreadable payloads to, so they end as dead records, not crash loops
CORRUPT_FUNCTION = "millrace:corrupt"


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    record_id: str
    args: dict[str, Any]
    attempt_base: int
    #: None when the job was enqueued untraced, or its context is not one (it is ignored, never fatal)
    trace_context: tracing.TraceContext | None = None


def redis_job_id(record_id: str, attempt_base: int) -> str:
    """Each budget of attempts gets its own arq id, so arq's memory of the last run cannot block a retry."""
    return record_id if attempt_base == 0 else f"{record_id}@{attempt_base}"


def record_id_of(redis_id: str) -> str:
    """The record a Redis job id belongs to; an id PostgreSQL could not store is spelled out instead."""
    record_id = redis_id.split("@", 1)[0]
    if unstorable_text(record_id) is None and len(record_id) <= _MAX_ID_LENGTH:
        return record_id
    return record_id.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\0")[:_MAX_ID_LENGTH]


def attempt_base_of(redis_id: str) -> int:
    """The attempt base a Redis id carries (see redis_job_id); 0 when it carries none or garbage."""
    _, _, base = redis_id.partition("@")
    return int(base) if base.isascii() and base.isdigit() and len(base) < 10 else 0


def make_envelope(
    record_id: str, args: dict[str, Any], attempt_base: int, trace_context: tracing.TraceContext | None = None
) -> dict[str, Any]:
    envelope: dict[str, Any] = {"id": record_id, "args": args, "base": attempt_base}
    if trace_context is not None:  # absent when untraced: the payloads of untraced jobs stay as they were
        envelope["trace"] = trace_context
    return envelope


def read_envelope(raw: Any) -> Envelope:
    """The envelope of a job the worker is about to run; its deserializer has checked it already."""
    problem = envelope_problem(raw)
    if problem is not None:
        raise CorruptPayload(problem, repr(raw).encode("utf-8", "backslashreplace"))
    return Envelope(
        record_id=raw["id"],
        args=raw["args"],
        attempt_base=raw.get("base", 0),
        trace_context=tracing.received(raw.get("trace")),
    )


def dumps(data: Any) -> bytes:
    # repr for anything JSON cannot hold: only arq's result records can contain such values
    return json.dumps(data, separators=(",", ":"), default=repr).encode()


def loads(raw: bytes) -> Any:
    return json.loads(raw)


def serialize_job(function: str, args: list[Any], enqueue_time_ms: int) -> bytes:
    """arq's job record (see arq.jobs.serialize_job), in JSON."""
    return dumps({"t": None, "f": function, "a": args, "k": {}, "et": enqueue_time_ms})


#: a record larger than this is refused unread (a real job record is a few hundred bytes)
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: arq's max_tries for Millrace's jobs and crons (execution.ARQ_MAX_TRIES): a record claiming more tries
#: would make arq drop the job unrun ("max retries exceeded"). The corrupt-payload handler has arq's
#: default of 5; load() makes its calls with no try count, and one found in Redis must carry none either.
MAX_JOB_TRY = 1000
#: the end of year 9999 less two days: past year 9999 arq's worker crashes turning the enqueue time
#: into a datetime, and with pytz installed arq shifts it into the zone named by $TIMEZONE or $TZ
MAX_ENQUEUE_TIME_MS = 253_402_300_799_000 - 2 * 86_400_000
_MAX_ATTEMPT_BASE = 1_000_000
_MAX_ID_LENGTH = 200
_MAX_REASON_LENGTH = 1000
_PREVIEW_BYTES = 2000
#: each byte of a preview decodes to at most four characters (backslashreplace: \xNN)
_MAX_PREVIEW_LENGTH = 4 * _PREVIEW_BYTES
#: how arq begins the names of cron functions and the ids of their runs (cron:<name>:<tick in ms>)
CRON_ID_PREFIX = "cron:"
#: the fields of arq's job record (arq.jobs.serialize_job), and of its result record (serialize_result)
_JOB_KEYS = frozenset({"f", "a", "k", "t", "et"})
_RESULT_KEYS = _JOB_KEYS | {"s", "r", "st", "ft", "q", "id"}
#: what arq.jobs.deserialize_result and, should one be found where a job belongs, run_job need of a result
_RESULT_TYPES = {"f": str, "a": list, "k": dict, "s": bool, "q": str, "id": str}
#: arq counts tries with Redis INCR, a signed 64-bit integer
_MAX_COUNTED_TRY = 2**63 - 1
#: "trace" is never a reason to refuse a job: a context that is not one is ignored (tracing.received)
_ENVELOPE_KEYS = frozenset({"id", "args", "base", "trace"})


def worker_loads(known_functions: Collection[str]) -> Callable[[bytes], Any]:
    """A deserializer that turns anything unreadable into a call of CORRUPT_FUNCTION instead of an error.

    arq trusts what this returns: a wrong type in any field of its record can crash the worker process,
    and a wrong shape fails the job before Millrace's wrapper runs. So every field is checked here (types,
    ranges, sizes, depth, text PostgreSQL can store), and a record that fails is routed to CORRUPT_FUNCTION,
    so that the job's record ends `dead` with the reason and a preview of the bytes. It never raises.

    arq reads its result records with the same function (`Job.result_info`, `Worker.run_check`): those
    are returned as they are, once the fields arq reads are of the types it needs.
    """

    def load(raw: bytes) -> Any:
        data, reason = _parse(raw)
        if reason is None:
            reason = result_problem(data) if _is_result(data) else record_problem(data, known_functions)
        return data if reason is None else _corrupt(raw, reason)

    return load


def record_problem(data: Any, known_functions: Collection[str]) -> str | None:
    """Why `data` is not a job record this worker can run, or None when it is."""
    if not isinstance(data, dict) or set(data) != _JOB_KEYS:
        return "not an arq job record: " + _describe_keys(data, _JOB_KEYS)
    function = data["f"]
    if not isinstance(function, str) or function not in known_functions:
        return f"no job named {_short(function)} on this queue"
    if function == CORRUPT_FUNCTION:
        return _header_problem(data["t"], data["et"], 0) or _corrupt_call_problem(data["a"], data["k"])
    return _header_problem(data["t"], data["et"], MAX_JOB_TRY) or _arguments_problem(function, data["a"], data["k"])


def result_problem(data: dict[str, Any]) -> str | None:
    """Why `data` is not one of arq's result records with the types arq reads back, or None."""
    if set(data) != _RESULT_KEYS:
        return "not an arq result record: " + _describe_keys(data, _RESULT_KEYS)
    wrong = [key for key, kind in _RESULT_TYPES.items() if not isinstance(data[key], kind)]
    wrong += [key for key in ("et", "st", "ft") if not _whole(data[key], 0, MAX_ENQUEUE_TIME_MS)]
    wrong += [] if data["t"] is None or _whole(data["t"], 0, _MAX_COUNTED_TRY) else ["t"]
    return f"arq result record with unreadable {', '.join(wrong)}" if wrong else None


def envelope_problem(raw: Any) -> str | None:
    """Why `raw` is not a Millrace envelope whose record PostgreSQL can hold, or None."""
    if not isinstance(raw, dict) or set(raw) - _ENVELOPE_KEYS or not isinstance(raw.get("args"), dict):
        return "arguments are not a Millrace envelope"
    record_id = raw.get("id")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= _MAX_ID_LENGTH:
        return "the envelope's record id is not a short text"
    if not _whole(raw.get("base", 0), 0, _MAX_ATTEMPT_BASE):
        return "attempt base is not a non-negative integer"
    problem = unstorable_text([record_id, raw["args"]])
    return None if problem is None else f"the envelope cannot be stored: {problem}"


def _parse(raw: bytes) -> tuple[Any, str | None]:
    if len(raw) > MAX_RECORD_BYTES:
        return None, f"larger than {MAX_RECORD_BYTES} bytes"
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float), None
    except RecursionError:  # the C scanner recurses once per level of nesting
        return None, "JSON nested too deep to read"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, f"not JSON: {str(error)[:200]}"
    except ValueError as error:  # NaN, Infinity, 1e400, an integer of more than 4300 digits
        return None, f"JSON with a number Millrace cannot hold: {str(error)[:200]}"


def _is_result(data: Any) -> bool:
    return isinstance(data, dict) and "s" in data


def _header_problem(job_try: Any, enqueue_time_ms: Any, max_try: int) -> str | None:
    if not _whole(enqueue_time_ms, 0, MAX_ENQUEUE_TIME_MS):
        return f"enqueue time (et) {_short(enqueue_time_ms)} is not a time in milliseconds"
    if job_try is not None and not _whole(job_try, 0, max_try):
        return f"try count (t) {_short(job_try)} is not null or a whole number up to {max_try}"
    return None


def _arguments_problem(function: str, args: Any, kwargs: Any) -> str | None:
    if not isinstance(args, list):
        return f"arguments (a) are {_short(args)}, not a list"
    if kwargs != {}:
        return f"keyword arguments (k) are {_short(kwargs)}, not an empty object"
    if function.startswith(CRON_ID_PREFIX):
        return None if args == [] else "a cron function takes no arguments"
    if len(args) != 1:
        return f"{len(args)} arguments, not one Millrace envelope"
    return envelope_problem(args[0])


def _corrupt_call_problem(args: Any, kwargs: Any) -> str | None:
    """A call of the corrupt-payload handler found in Redis, as load() makes them: (reason, preview)."""
    if not isinstance(args, list) or len(args) != 2 or not all(isinstance(text, str) for text in args) or kwargs != {}:
        return "the corrupt-payload handler takes two texts, a reason and a preview"
    reason, preview = args
    if not 0 < len(reason) <= _MAX_REASON_LENGTH or len(preview) > _MAX_PREVIEW_LENGTH:
        return "the corrupt-payload handler's reason or preview is empty or too long"
    problem = unstorable_text(args)
    return None if problem is None else f"the corrupt-payload call cannot be stored: {problem}"


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short(value: Any) -> str:
    """A bounded description of a value read from Redis; it never walks into a container."""
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, list | dict):
        return "an array" if isinstance(value, list) else "an object"
    return repr(value)[:60]


def _describe_keys(data: Any, expected: frozenset[str]) -> str:
    if not isinstance(data, dict):
        return f"{_short(data)}, not an object"
    missing = ", ".join(sorted(expected - set(data))) or "none"
    extra = ", ".join(_short(key) for key in sorted(set(data) - expected)[:5]) or "none"
    return f"keys missing: {missing}; unexpected: {extra}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as infinity, which no jsonb column takes
        raise ValueError(f"number {text[:40]} is out of range")
    return number


def _corrupt(raw: bytes, reason: str) -> dict[str, Any]:
    preview = raw[:_PREVIEW_BYTES].decode("utf-8", "backslashreplace").replace("\x00", "\\0")
    return {"t": None, "f": CORRUPT_FUNCTION, "a": [reason, preview], "k": {}, "et": int(time.time() * 1000)}
