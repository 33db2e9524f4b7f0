"""A failure's fingerprint: the same bug gives the same one, whatever the values, lines or hosts.

Made of the job's function, the error's type and the traceback's frames as (module path, function),
without line numbers (a deploy that moves code does not split a group) and without the message
(values in it, ids and amounts, would make each failure its own group). Sentry and Rollbar group
the same way, by default.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
import traceback
from functools import cache

#: frames kept from the innermost end: the deep end of a recursion does not make new groups
MAX_FRAMES = 30


def fingerprint(function: str, error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)[-MAX_FRAMES:]
    parts = [function, _type_name(error), *(f"{_short_path(f.filename)}:{f.name}" for f in frames)]
    return hashlib.sha256("\n".join(parts).encode("utf-8", "backslashreplace")).hexdigest()[:16]


def fingerprint_without_traceback(function: str, error_type: str) -> str:
    """For failures with no traceback of their own (a worker lost, a payload unreadable)."""
    return hashlib.sha256(f"{function}\n{error_type}".encode("utf-8", "backslashreplace")).hexdigest()[:16]


def _type_name(error: BaseException) -> str:
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


def _short_path(filename: str) -> str:
    """The path from the folder it was imported from: the same on every host and in every virtualenv."""
    for root in _import_roots():
        if filename.startswith(root):
            return filename[len(root) :].lstrip("/\\")
    return filename


@cache
def _import_roots() -> tuple[str, ...]:
    roots = {p for p in sys.path if p} | {p for p in sysconfig.get_paths().values() if p}
    return tuple(sorted(roots, key=len, reverse=True))  # the longest (most specific) root first
