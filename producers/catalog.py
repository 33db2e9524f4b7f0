"""Every job reference the producers declare, by name: for the CLI's `enqueue`."""

from __future__ import annotations

from typing import Any

from millrace import JobRef, collect_refs
from producers import emails, integrations, maintenance, notifications, payments, schedules


def all_refs() -> dict[str, JobRef[Any]]:
    return collect_refs([emails, integrations, maintenance, notifications, payments, schedules])
