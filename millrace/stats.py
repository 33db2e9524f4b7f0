"""Per-minute counts and histograms of attempts, written with the claims and finishes that make them.

The dashboard's charts and percentiles and the Prometheus metrics read `millrace_stats` (a row per
queue, function and minute) instead of the job tables, so that they cost the same with a thousand
records or a hundred million. The claim and the finish statements carry the upserts as one more step
(store.attempts), so the figures cost no round trip and agree with the records they come from.

A histogram is an array of cumulative counts, as Prometheus's are: element i counts the values at most
BUCKETS_S[i] seconds, and the count of all values is the row's `started` (waits) or the sum of its
outcomes (durations).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: bucket bounds in seconds, shared by waits (due to started) and durations (started to finished)
BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)

#: an empty histogram, for the half of a row a statement does not write
ZERO_SQL = "'{" + ",".join("0" for _ in BUCKETS_S) + "}'::bigint[]"


def cumulative_sql(seconds: str) -> str:
    """An aggregate making the cumulative histogram of the expression `seconds` over a group."""
    return "ARRAY[" + ", ".join(f"count(*) FILTER (WHERE {seconds} <= {bound})" for bound in BUCKETS_S) + "]"


def added_sql(left: str, right: str) -> str:
    """Two histograms added element by element (in an ON CONFLICT DO UPDATE, say)."""
    return f"ARRAY(SELECT x + y FROM unnest({left}, {right}) WITH ORDINALITY AS t(x, y, i) ORDER BY i)"


def quantile(cumulative: Sequence[int], total: int, q: float) -> float | None:
    """The q-quantile estimated from a cumulative histogram, interpolating inside its bucket as
    Prometheus's histogram_quantile does; None without values. Values past the last bound report it."""
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(BUCKETS_S, cumulative, strict=True):
        if count >= rank:
            inside = count - lower_count
            if inside <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / inside
        lower_bound, lower_count = bound, count
    return BUCKETS_S[-1]


def drain_estimate_s(waiting: int, arrivals_per_s: float, completions_per_s: float) -> float | None:
    """How long the backlog takes to empty at the rates of late: None if it does not shrink."""
    if waiting <= 0:
        return 0.0
    net = completions_per_s - arrivals_per_s
    if net <= 0 or math.isclose(net, 0.0):
        return None
    return waiting / net
