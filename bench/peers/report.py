"""The medians of the rounds, the ratios, the one table, and the JSON file under bench/results/."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.peers.envs import ROOT
from bench.peers.systems import System

RESULTS = ROOT / "bench" / "results"
#: the Millrace row the ratios are taken from: the wake-up is what production is meant to run
REFERENCE = "millrace-wake"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(run[key]) for run in runs) if runs else float("nan")


def summarize(raw: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per system: the median over rounds of each figure; latency percentiles over every sample."""
    summary = {}
    for key, runs in raw.items():
        one, two = runs["one_worker"], runs["two_workers"]
        delays = [delay for samples in runs["latency_ms"] for delay in samples]  # every round's samples together
        summary[key] = {
            "one_worker_jobs_per_s": _median(one, "jobs_per_s"),
            "two_workers_jobs_per_s": _median(two, "jobs_per_s"),
            "latency_p50_ms": percentile(delays, 50) if delays else float("nan"),
            "latency_p99_ms": percentile(delays, 99) if delays else float("nan"),
            "worker_cpu_ms_per_job": _median(one, "worker_cpu_ms_per_job"),
            "server_cpu_ms_per_job": _median(one, "server_cpu_ms_per_job"),
            "enqueue_per_s": _median(one + two, "enqueue_per_s"),
        }
        if one and "db_transactions_per_job" in one[0]:
            summary[key]["db_transactions_per_job"] = _median(one, "db_transactions_per_job")
            summary[key]["db_transactions_per_job_two_workers"] = _median(two, "db_transactions_per_job")
        if runs["outbox_per_s"]:
            summary[key]["outbox_enqueue_per_s"] = statistics.median(runs["outbox_per_s"])
    return summary


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Millrace (wake-up on) divided by each row: above 1 is Millrace faster, or for CPU, costlier."""
    if REFERENCE not in summary:
        return {}
    ref = summary[REFERENCE]
    figures = ("one_worker_jobs_per_s", "two_workers_jobs_per_s", "enqueue_per_s", "worker_cpu_ms_per_job")
    return {key: {f: ref[f] / row[f] if row[f] else float("nan") for f in figures} for key, row in summary.items()}


def table(systems: list[System], summary: dict[str, dict[str, float]], header: str) -> str:
    ratio = ratios(summary)
    lines = [
        header,
        f"{'':<24}{'---- jobs/s -----':>20}{'enqueue→start':>18}{'-- CPU ms/job --':>20}{'enqueue':>10}"
        f"   {'Millrace (wake-up) ÷ row':^27}",
        f"{'system':<24}{'1 worker':>10}{'2 workers':>10}{'p50 ms':>9}{'p99 ms':>9}{'workers':>10}{'servers':>10}"
        f"{'jobs/s':>10}   {'1 w':>6}{'2 w':>7}{'enq':>7}{'CPU':>7}",
    ]
    for system in systems:
        row = summary[system.key]
        r = ratio.get(system.key)
        ratio_cells = (
            f"{r['one_worker_jobs_per_s']:>6.2f}{r['two_workers_jobs_per_s']:>7.2f}"
            f"{r['enqueue_per_s']:>7.2f}{r['worker_cpu_ms_per_job']:>7.2f}"
            if r
            else ""
        )
        lines.append(
            f"{system.label:<24}{row['one_worker_jobs_per_s']:>10.0f}{row['two_workers_jobs_per_s']:>10.0f}"
            f"{row['latency_p50_ms']:>9.1f}{row['latency_p99_ms']:>9.1f}{row['worker_cpu_ms_per_job']:>10.3f}"
            f"{row['server_cpu_ms_per_job']:>10.3f}{row['enqueue_per_s']:>10.0f}   {ratio_cells}"
        )
    lines.append("CPU: user+system time in the one-worker drain; servers: Redis, and Millrace's PostgreSQL backends")
    lines.append("Ratios: Millrace (wake-up on) ÷ the row; above 1: Millrace faster (jobs/s, enqueue) or dearer (CPU)")
    for s in systems:
        if "db_transactions_per_job" in summary[s.key]:
            one, two = (summary[s.key][f] for f in ("db_transactions_per_job", "db_transactions_per_job_two_workers"))
            lines.append(f"{s.label}: {one:.3f} database transactions per job with 1 worker, {two:.3f} with 2")
    outbox = [summary[s.key]["outbox_enqueue_per_s"] for s in systems if "outbox_enqueue_per_s" in summary[s.key]]
    if outbox:
        lines.append(f"Millrace enqueue inside a transaction of its own (the outbox): {outbox[0]:.0f} jobs/s")
    return "\n".join(lines)


def save(document: dict[str, Any], created: datetime) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"peers-{created.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
