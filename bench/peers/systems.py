"""The systems compared, each as the commands that start its worker and its producer."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bench.peers import envs
from millrace import wakeup

#: arq's own log lines per job are off for both arq-based systems, as every system here logs warnings only
_ARQ_LOGS = ("--custom-log-dict", "bench.peers.protocol.WARNINGS_ONLY")


@dataclass(frozen=True, slots=True, kw_only=True)
class System:
    key: str
    label: str
    #: one worker process; the driver adds BENCH_REDIS_URL, BENCH_CONCURRENCY (and the database) to `env`
    worker: tuple[str, ...]
    #: the producer, to which the driver appends `produce`, `stamps` or `outbox` and their options
    producer: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    #: Millrace: durable records, so a fresh PostgreSQL database for each run
    durable: bool = False
    #: the package whose version the results record, and the interpreter that knows it
    package: str = ""
    python: str = ""


def _python_side(key: str, label: str, system: str, concurrency: int) -> System:
    python = str(envs.python_env(system))
    module = f"bench.peers.{system}_side"
    return System(
        key=key,
        label=label,
        worker=(python, "-m", module, "worker", "--concurrency", str(concurrency)),
        producer=(python, "-m", module),
        package=system,
        python=python,
    )


def _arq(poll_delay_s: float) -> System:
    python = str(envs.python_env("arq"))
    return System(
        key=f"arq-{poll_delay_s:g}",
        label=f"arq, poll {poll_delay_s:g} s",
        worker=(python, "-m", "arq", "bench.peers.arq_side.WorkerSettings", *_ARQ_LOGS),
        producer=(python, "-m", "bench.peers.arq_side"),
        env={"BENCH_POLL_DELAY_S": str(poll_delay_s)},
        package="arq",
        python=python,
    )


def _millrace(idle_wait_s: float) -> System:
    woken = idle_wait_s > 0
    return System(
        key="millrace-wake" if woken else "millrace-poll",
        label="Millrace, wake-up on" if woken else "Millrace, poll 0.1 s",
        worker=(sys.executable, "-m", "arq", "bench.peers.millrace_side.BenchWorker", *_ARQ_LOGS),
        producer=(sys.executable, "-m", "bench.peers.millrace_side"),
        env={"BENCH_IDLE_WAIT_S": str(idle_wait_s)},
        durable=True,
        package="millrace",
        python=sys.executable,
    )


def _node(concurrency: int) -> System | None:
    node = envs.node_env()
    if node is None:
        return None
    script = str(envs.NODE_DIR / "bench.mjs")
    return System(
        key="bullmq-node",
        label="BullMQ, Node.js",
        worker=(node, script, "worker", "--concurrency", str(concurrency)),
        producer=(node, script),
        package="bullmq (npm)",
    )


def all_systems(concurrency: int, only: set[str] | None = None) -> list[System]:
    """Every system this machine can run (BullMQ on Node.js where node and npm are present), in table order."""
    makers: dict[str, Callable[[], System | None]] = {
        "millrace-wake": lambda: _millrace(wakeup.IDLE_WAIT_S),
        "millrace-poll": lambda: _millrace(0),
        "arq-0.5": lambda: _arq(0.5),
        "arq-0.01": lambda: _arq(0.01),
        "saq": lambda: _python_side("saq", "SAQ", "saq", concurrency),
        "bullmq-py": lambda: _python_side("bullmq-py", "BullMQ, Python port", "bullmq", concurrency),
        "bullmq-node": lambda: _node(concurrency),
    }
    made = [make() for key, make in makers.items() if only is None or key in only]
    return [s for s in made if s is not None]


def version(system: System) -> str:
    if system.key == "bullmq-node":
        manifest = envs.NODE_DIR / "node_modules" / "bullmq" / "package.json"
        return str(json.loads(manifest.read_text())["version"])
    script = f"import importlib.metadata as m; print(m.version({system.package!r}))"
    return subprocess.run([system.python, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
