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
    return redis_id.split("@", 1)[0]


def attempt_base_of(redis_id: str) -> int:
    """The attempt base a Redis id carries (see redis_job_id); 0 when it carries none or garbage."""
    _, _, base = redis_id.partition("@")
    return int(base) if base.isascii() and base.isdigit() and len(base) < 10 else 0


def make_envelope(record_id: str, args: dict[str, Any], attempt_base: int) -> dict[str, Any]:
    return {"id": record_id, "args": args, "base": attempt_base}


def read_envelope(raw: Any) -> Envelope:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("args"), dict):
        raise CorruptPayload("arguments are not a Millrace envelope", repr(raw).encode())
    base = raw.get("base", 0)
    if not isinstance(base, int) or base < 0:
        raise CorruptPayload("attempt base is not a non-negative integer", repr(raw).encode())
    return Envelope(record_id=raw["id"], args=raw["args"], attempt_base=base)


def dumps(data: Any) -> bytes:
    # repr for anything JSON cannot hold: only arq's result records can contain such values
    return json.dumps(data, separators=(",", ":"), default=repr).encode()


def loads(raw: bytes) -> Any:
    return json.loads(raw)


def serialize_job(function: str, args: list[Any], enqueue_time_ms: int) -> bytes:
    """arq's job record (see arq.jobs.serialize_job), in JSON."""
    return dumps({"t": None, "f": function, "a": args, "k": {}, "et": enqueue_time_ms})


def worker_loads(known_functions: Collection[str]) -> Callable[[bytes], Any]:
    """A deserializer that turns anything unreadable into a call of CORRUPT_FUNCTION instead of an error.

    arq, given an error here, drops the job with a log line and no record; routed this way, the job's
    record ends `dead` with the reason and a preview of the bytes.
    """

    def load(raw: bytes) -> Any:
        try:
            data = json.loads(raw)
        except ValueError as error:
            return _corrupt(raw, f"not JSON: {error}")
        if not isinstance(data, dict) or not data.keys() >= _ARQ_KEYS:
            return _corrupt(raw, "not an arq job record")
        if "s" not in data and data["f"] not in known_functions:
            return _corrupt(raw, f"no job named {data['f']!r} on this queue")
        return data

    return load


def _corrupt(raw: bytes, reason: str) -> dict[str, Any]:
    preview = raw[:2000].decode("utf-8", "backslashreplace")
    return {"t": None, "f": CORRUPT_FUNCTION, "a": [reason, preview], "k": {}, "et": int(time.time() * 1000)}
