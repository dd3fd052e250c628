"""First-allocation policies of Tovar et al. ("Job Sizing Strategies for Heterogeneous
Resources"), as cctools computes them for Work Queue / TaskVine categories.

A category's history is a histogram: each measured peak falls in a bucket (start, end] keyed by
its end (250 MB for memory, 1 core …) and every bucket also accumulates the wall time of its
tasks. A task given a first allocation `a` that needs more is killed and retried at the maximum
`a_m`; the policies pick `a` among the bucket ends:

* max            — `a_m` itself: the largest peak seen plus a third of a bucket, rounded up to
                   a bucket end (cctools `category_first_allocation_max_seen`). No retries.
* min-waste      — minimise the expected resource-time spent per task
                   E(a) = a·τ̄ + a_m·Σ_{buckets > a} T_j / N
                   (every task holds `a` for its run; those above `a` hold `a_m` again).
* max-throughput — maximise tasks per unit of resource per unit of time
                   Θ(a) = (P(r ≤ a)·a_m/a + P(r > a)) / (τ̄ + Σ_{buckets > a} T_j / N).

τ̄ is the mean wall time, T_j the summed wall time in bucket j, N the number of tasks. Ties go
to the smaller allocation (cctools compares strictly), `a` never exceeds `a_m`. Pure functions
over plain numbers, so the CLI and the simulator share them and tests can check them by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Policy = Literal["max", "min-waste", "max-throughput"]
POLICIES: tuple[Policy, ...] = ("max", "min-waste", "max-throughput")


def bucket_end(value: float, bucket: int) -> int:
    """The end of the (start, end] bucket holding `value` (0 stays 0)."""
    if bucket <= 0:
        raise ValueError("bucket size must be positive")
    return math.ceil(value / bucket) * bucket


@dataclass(frozen=True)
class Histogram:
    """Bucketed peaks of one resource with the wall time spent in each bucket."""

    bucket: int
    keys: tuple[int, ...]  # bucket ends, ascending
    counts: tuple[int, ...]
    times: tuple[float, ...]  # summed wall time (s) of the tasks in each bucket
    max_value: float  # the largest raw value seen

    @property
    def total(self) -> int:
        return sum(self.counts)


def build_histogram(samples: Iterable[tuple[float, float]], bucket: int) -> Histogram:
    """`samples` are (peak value, wall time) pairs of completed tasks."""
    counts: dict[int, int] = {}
    times: dict[int, float] = {}
    top = 0.0
    for value, wall in samples:
        key = bucket_end(value, bucket)
        counts[key] = counts.get(key, 0) + 1
        times[key] = times.get(key, 0.0) + max(0.0, wall)
        top = max(top, value)
    keys = tuple(sorted(counts))
    return Histogram(
        bucket=bucket,
        keys=keys,
        counts=tuple(counts[k] for k in keys),
        times=tuple(times[k] for k in keys),
        max_value=top,
    )


def max_seen(h: Histogram) -> int:
    """cctools' max policy: round_up(max + floor(bucket/3)); the retry allocation a_m."""
    value = bucket_end(h.max_value + h.bucket // 3, h.bucket)
    return max(value, h.bucket)


def _accumulate(h: Histogram) -> tuple[float, list[float], list[int]]:
    """τ̄, the tail-time share Σ_{j>i} T_j/N for each bucket, and cumulative counts."""
    n = h.total
    tail = [0.0] * len(h.keys)
    for i in range(len(h.keys) - 2, -1, -1):
        tail[i] = tail[i + 1] + h.times[i + 1] / n
    tau_mean = (tail[0] + h.times[0] / n) if h.keys else 0.0
    cum: list[int] = []
    running = 0
    for c in h.counts:
        running += c
        cum.append(running)
    return tau_mean, tail, cum


def expected_waste(h: Histogram, a_index: int, a_m: int) -> float:
    """E(a) for the bucket end at `a_index` (resource·seconds per task)."""
    tau_mean, tail, _ = _accumulate(h)
    return h.keys[a_index] * tau_mean + a_m * tail[a_index]


def expected_throughput(h: Histogram, a_index: int, a_m: int) -> float:
    """Θ(a) up to the constant factor N (cctools drops it too; the argmax is the same)."""
    tau_mean, tail, cum = _accumulate(h)
    a = h.keys[a_index]
    before = cum[a_index]
    after = cum[-1] - before
    denominator = tau_mean + tail[a_index]
    if denominator <= 0:
        # every task took no measurable time: throughput is proportional to tasks per unit
        denominator = 1e-9
    return ((before * a_m) / a + after) / denominator


def first_allocation(h: Histogram, policy: Policy) -> int:
    """The first allocation for the category (a bucket end, at least one bucket)."""
    if not h.keys:
        raise ValueError("no measurements")
    a_m = max_seen(h)
    if policy == "max":
        return a_m
    tau_mean, tail, cum = _accumulate(h)
    best = a_m
    if policy == "min-waste":
        best_value = math.inf
        for i, a in enumerate(h.keys):
            if a < 1:
                continue
            value = a * tau_mean + a_m * tail[i]
            if value < best_value:
                best_value, best = value, a
    elif policy == "max-throughput":
        best_value = 0.0
        denominator_floor = 1e-9
        for i, a in enumerate(h.keys):
            if a < 1:
                continue
            before = cum[i]
            after = cum[-1] - before
            value = ((before * a_m) / a + after) / max(tau_mean + tail[i], denominator_floor)
            if value > best_value:
                best_value, best = value, a
    else:
        raise ValueError(f"unknown policy {policy!r}")
    return min(best, a_m)
