"""What one worker process holds for its jobs: pools, the record writer, the application's services."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from arq.connections import ArqRedis

from millrace.client import JobClient
from millrace.pause import QueuePause
from millrace.progress import ProgressWriter
from millrace.queues import Queue
from millrace.recorder import RecordWriter
from millrace.store.pool import Pool

S = TypeVar("S")

#: the key under which a worker keeps its WorkerRuntime in arq's context dict
RUNTIME_KEY = "millrace"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningAttempt:
    job_id: str
    function: str
    attempt: int
    lease: int


@dataclass(slots=True)
class InHand:
    """How many attempts the worker holds now, from the moment arq hands a job over until its end is on
    record: those waiting for their claim's record count too, where `running` knows only claimed ones."""

    count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRuntime(Generic[S]):
    queue: Queue
    worker_name: str
    pool: Pool
    redis: ArqRedis
    records: RecordWriter
    progress: ProgressWriter
    jobs: JobClient
    services: S
    #: how long a claim refused because another live worker holds the job waits before it looks again
    recheck_held_s: float
    #: the attempts running now, by the task that runs them: the watchdog names the one that blocks
    running: dict[asyncio.Task[Any], RunningAttempt] = field(default_factory=dict)
    #: job ids running now: a second copy of one of them is not even claimed
    running_ids: set[str] = field(default_factory=set)
    #: the attempts a person may abort now (their body, or the rate limit's wait before it), by job id
    abortable: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    #: job ids among them whose abort was asked for and whose task is cancelled (execution.abort_running)
    aborting: set[str] = field(default_factory=set)
    in_hand: InHand = field(default_factory=InHand)
    #: whether the queue is paused, as the heartbeat last heard
    pause: QueuePause = field(default_factory=QueuePause)


def runtime_of(ctx: dict[str, Any]) -> WorkerRuntime[Any]:
    runtime = ctx[RUNTIME_KEY]
    assert isinstance(runtime, WorkerRuntime), "the worker's on_startup did not run"
    return runtime


def worker_name(queue: Queue) -> str:
    """host:pid:queue:token, as attempts record it; the token tells two starts of one pid apart (containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{queue.name}:{secrets.token_hex(3)}"
