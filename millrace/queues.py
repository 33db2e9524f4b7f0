"""A queue: its name, how many jobs one worker process runs at once, and its default timeout."""

from __future__ import annotations

from dataclasses import dataclass

from millrace.caps import Cap

_REDIS_QUEUE_PREFIX = "millrace:queue:"


def redis_queue_key(queue_name: str) -> str:
    """The arq queue (a Redis sorted set) that holds a queue's jobs: the one spelling of it."""
    return _REDIS_QUEUE_PREFIX + queue_name


@dataclass(frozen=True, slots=True, kw_only=True)
class Queue:
    name: str
    #: jobs one worker process runs at once (arq's `max_jobs`)
    concurrency: int
    #: default timeout of a job of this queue; a job may declare its own
    timeout_s: float = 300
    #: at most this many of the queue's jobs run at once across every worker process (None: no cap)
    cap: int | None = None
    #: producers are refused (errors.QueueFull) while Redis holds this many of the queue's jobs
    #: (waiting, scheduled, retrying or running); None: no bound (see millrace.backpressure)
    max_backlog: int | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"queue name {self.name!r} must be an identifier (it names a worker class)")
        if self.concurrency < 1:
            raise ValueError(f"queue {self.name!r}: concurrency must be at least 1")
        if self.max_backlog is not None and self.max_backlog < 1:
            raise ValueError(f"queue {self.name!r}: max_backlog must be at least 1")

    @property
    def shared_cap(self) -> Cap | None:
        return None if self.cap is None else Cap(f"queue:{self.name}", self.cap)

    @property
    def redis_key(self) -> str:
        return redis_queue_key(self.name)

    @property
    def worker_class_name(self) -> str:
        """The name of its arq settings class, as the Procfile spells it: `image_resize` gives `ImageResizeWorker`."""
        return self.name.title().replace("_", "") + "Worker"
