"""How a job travels in Redis: arq's job record as JSON, with Millrace's envelope as its one argument.

The envelope carries the record id and the attempt base, so that a dead letter retried under a new
Redis id still writes to its own record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from millrace.errors import CorruptPayload
from millrace.text import unstorable_text

#: arq function name a worker routes unreadable payloads to, so they end as dead records, not crash loops
CORRUPT_FUNCTION = "millrace:corrupt"
_ARQ_KEYS = frozenset({"f", "a", "k", "t", "et"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    record_id: str
    args: dict[str, Any]
    attempt_base: int


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


def make_envelope(record_id: str, args: dict[str, Any], attempt_base: int) -> dict[str, Any]:
    return {"id": record_id, "args": args, "base": attempt_base}


def read_envelope(raw: Any) -> Envelope:
    """The envelope of a job the worker is about to run; its deserializer has checked it already."""
    problem = envelope_problem(raw)
    if problem is not None:
        raise CorruptPayload(problem, repr(raw).encode("utf-8", "backslashreplace"))
    return Envelope(record_id=raw["id"], args=raw["args"], attempt_base=raw.get("base", 0))


def dumps(data: Any) -> bytes:
    # repr for anything JSON cannot hold: only arq's result records can contain such values
    return json.dumps(data, separators=(",", ":"), default=repr).encode()


def loads(raw: bytes) -> Any:
    return json.loads(raw)


def serialize_job(function: str, args: list[Any], enqueue_time_ms: int) -> bytes:
    """arq's job record (see arq.jobs.serialize_job), in JSON."""
    return dumps({"t": None, "f": function, "a": args, "k": {}, "et": enqueue_time_ms})


#: a job record larger than this is refused unread (a real one is a few hundred bytes)
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: the last millisecond arq can turn into a datetime (year 9999); beyond it, arq's worker would crash
_MAX_TIME_MS = 253_402_300_799_000
_MAX_TRY = 1_000_000
_MAX_ID_LENGTH = 200


def worker_loads(known_functions: Collection[str]) -> Callable[[bytes], Any]:
    """A deserializer that turns anything unreadable into a call of CORRUPT_FUNCTION instead of an error.

    arq trusts what this returns: a wrong type in any field of its record can crash the worker process,
    and a wrong shape fails the job before Millrace's wrapper runs. So every field is checked here (types,
    sizes, depth, text PostgreSQL can store), and a record that fails is routed to CORRUPT_FUNCTION, so
    that the job's record ends `dead` with the reason and a preview of the bytes. It never raises.
    """

    def load(raw: bytes) -> Any:
        if len(raw) > MAX_RECORD_BYTES:
            return _corrupt(raw, f"larger than {MAX_RECORD_BYTES} bytes")
        try:
            data = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as error:
            return _corrupt(raw, f"not JSON: {str(error)[:200]}")
        if isinstance(data, dict) and "s" in data:
            return data  # one of arq's result records, read back by arq itself
        reason = record_problem(data, known_functions)
        return data if reason is None else _corrupt(raw, reason)

    return load


def record_problem(data: Any, known_functions: Collection[str]) -> str | None:
    """Why `data` is not a job record this worker can run, or None when it is."""
    if not isinstance(data, dict) or set(data) != _ARQ_KEYS:
        return "not an arq job record"
    function, args, kwargs = data["f"], data["a"], data["k"]
    if not isinstance(function, str) or function == CORRUPT_FUNCTION or function not in known_functions:
        return f"no job named {_short(function)} on this queue"
    if not _whole(data["et"], 0, _MAX_TIME_MS):
        return f"enqueue time {_short(data['et'])} is not a time in milliseconds"
    if data["t"] is not None and not _whole(data["t"], 0, _MAX_TRY):
        return f"try count {_short(data['t'])} is not a whole number"
    if not isinstance(args, list) or kwargs != {}:
        return "arguments are not arq's list and empty keywords"
    if function.startswith("cron:"):
        return None if args == [] else "a cron function takes no arguments"
    if len(args) != 1:
        return "arguments are not one Millrace envelope"
    return envelope_problem(args[0])


def envelope_problem(raw: Any) -> str | None:
    """Why `raw` is not a Millrace envelope whose record PostgreSQL can hold, or None."""
    if not isinstance(raw, dict) or set(raw) - {"id", "args", "base"} or not isinstance(raw.get("args"), dict):
        return "arguments are not a Millrace envelope"
    record_id = raw.get("id")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= _MAX_ID_LENGTH:
        return "the envelope's record id is not a short text"
    if not _whole(raw.get("base", 0), 0, _MAX_TRY):
        return "attempt base is not a non-negative integer"
    problem = unstorable_text([record_id, raw["args"]])
    return None if problem is None else f"the envelope cannot be stored: {problem}"


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short(value: Any) -> str:
    return repr(value)[:80]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _corrupt(raw: bytes, reason: str) -> dict[str, Any]:
    preview = raw[:2000].decode("utf-8", "backslashreplace").replace("\x00", "\\0")
    return {"t": None, "f": CORRUPT_FUNCTION, "a": [reason, preview], "k": {}, "et": int(time.time() * 1000)}
