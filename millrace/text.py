"""What PostgreSQL cannot store in text or jsonb: NUL characters and lone UTF-16 surrogates."""

from __future__ import annotations

from typing import Any

#: deeper than this, a JSON value is refused rather than walked (and json.loads would recurse as deep)
MAX_DEPTH = 64


def unstorable_text(value: Any, depth: int = 0) -> str | None:
    """Why `value` (a JSON-like value: str, list, tuple, dict and scalars) cannot be stored, or None."""
    if depth > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return _bad_string(value)
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    else:
        return None
    for item in items:
        problem = unstorable_text(item, depth + 1)
        if problem is not None:
            return problem
    return None


def _bad_string(text: str) -> str | None:
    if "\x00" in text:
        return "text contains a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text contains a lone surrogate (not valid Unicode)"
    return None


def storable_text(value: str | None, limit: int) -> str | None:
    """`value` cut to `limit` characters, with what PostgreSQL refuses spelled out: an error message or a
    traceback that carries a NUL or a lone surrogate must not block the batch of records it travels in."""
    if value is None:
        return None
    if _bad_string(value) is not None:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\0")
    return value[:limit]
