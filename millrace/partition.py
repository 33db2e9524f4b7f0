"""One job argument's value as a short, safe part of a Redis key: limits and caps `per_arg` give each
value (each tenant) a key of its own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: a longer value (or a hostile one) is hashed: keys stay short whatever a producer sends
MAX_VALUE_CHARS = 64


def value_key(args: Mapping[str, Any], per_arg: str) -> str:
    """`args[per_arg]` as JSON (a missing argument is `null`, one shared partition), hashed if long."""
    value = json.dumps(args.get(per_arg), sort_keys=True)
    if len(value) > MAX_VALUE_CHARS:
        value = hashlib.sha256(value.encode()).hexdigest()[:32]
    return value
