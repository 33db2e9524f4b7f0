"""What one worker process holds for its jobs: pools, the record writer, the application's services."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from arq.connections import ArqRedis

from millrace.client import JobClient
from millrace.queues import Queue
from millrace.recorder import RecordWriter
from millrace.store.pool import Pool

S = TypeVar("S")

#: the key under which a worker keeps its WorkerRuntime in arq's context dict
RUNTIME_KEY = "millrace"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRuntime(Generic[S]):
    queue: Queue
    worker_name: str
    pool: Pool
    redis: ArqRedis
    records: RecordWriter
    jobs: JobClient
    services: S


def runtime_of(ctx: dict[str, Any]) -> WorkerRuntime[Any]:
    runtime = ctx[RUNTIME_KEY]
    assert isinstance(runtime, WorkerRuntime), "the worker's on_startup did not run"
    return runtime


def worker_name(queue: Queue) -> str:
    """host:pid:queue, as attempts record it."""
    return f"{socket.gethostname()}:{os.getpid()}:{queue.name}"
