"""How values look on the dashboard: redacted arguments, durations, sizes, small charts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

REDACTED = "[redacted]"
#: arguments nested deeper than this are not walked (nor shown): a job's arguments are ids
MAX_DEPTH = 20


def redact(value: Any, names: Sequence[str], depth: int = 0) -> Any:
    """`value` with every field whose name contains one of `names` (case-insensitively) hidden."""
    if depth > MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {
            key: REDACTED if hidden(str(key), names) else redact(item, names, depth + 1) for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item, names, depth + 1) for item in value]
    return value


def hidden(key: str, names: Sequence[str]) -> bool:
    """Whether the field `key` is one of the redacted `names` (or contains one), whatever its case and
    whether it says `-` or `_`."""
    lowered = key.lower().replace("-", "_")
    return any(name.lower().replace("-", "_") in lowered for name in names)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    if value < 172_800:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} d"


def size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def moment(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime) -> str:
    return "-" if value is None else seconds(max(0.0, (now - value).total_seconds())) + " ago"


def sparkline(values: Sequence[int], *, width: int = 180, height: int = 28) -> str:
    """The points of an SVG polyline for `values` (oldest first), scaled to the box."""
    if not values:
        return ""
    top = max(max(values), 1)
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(values))
