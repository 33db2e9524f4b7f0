"""A queue: its name, how many jobs one worker process runs at once, and its default timeout."""

from __future__ import annotations

from dataclasses import dataclass

REDIS_QUEUE_PREFIX = "millrace:queue:"


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    name: str
    #: jobs one worker process runs at once (arq's `max_jobs`)
    concurrency: int
    #: default timeout of a job of this queue; a job may declare its own
    timeout_s: float = 300

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"queue name {self.name!r} must be an identifier (it names a worker class)")
        if self.concurrency < 1:
            raise ValueError(f"queue {self.name!r}: concurrency must be at least 1")

    @property
    def redis_key(self) -> str:
        """The arq queue (a sorted set) that holds this queue's jobs."""
        return REDIS_QUEUE_PREFIX + self.name
