"""Many run reports -> one view per function: counts, status classes, cache hits, percentiles.

A Slurm array of 5,000 tasks writes 5,000 reports; nobody reads them one by one. What a user
needs to decide what to ask the scheduler for next is, per function (category): how many runs
ended how, how often the node cache was warm, and the distribution (p50 / p95 / max) of wall
time, memory peak and cores — plus, for plots, the raw samples and when each run started and
ended on which host. Pure functions over decoded reports; reading files is the caller's job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lfm_pack.scale.reports import category_of

SCHEMA_CAMPAIGN = "lfm-pack.campaign/1"


@dataclass(frozen=True)
class Stats:
    """Nearest-rank percentiles of one measure over the runs that have it."""

    n: int
    p50: float | None
    p95: float | None
    max: float | None

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "p50": self.p50, "p95": self.p95, "max": self.max}


@dataclass(frozen=True)
class Span:
    """One run on the timeline: where, from when to when (epoch seconds), how it ended."""

    host: str
    start: float
    end: float
    status: str


@dataclass(frozen=True)
class FunctionView:
    """Everything the campaign view says about one function (category)."""

    category: str
    runs: int
    statuses: tuple[tuple[str, int], ...]  # sorted by count, then name
    cache_hits: int
    cache_known: int  # runs whose report says hit or miss (None: never reached the cache)
    hosts: int
    wall_time_s: Stats
    memory_peak_bytes: Stats
    cores_peak: Stats
    wall_samples: tuple[float, ...]
    memory_samples: tuple[float, ...]
    spans: tuple[Span, ...]

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.cache_known if self.cache_known else None

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "runs": self.runs,
            "statuses": dict(self.statuses),
            "cache": {
                "hits": self.cache_hits,
                "known": self.cache_known,
                "hit_rate": self.cache_hit_rate,
            },
            "hosts": self.hosts,
            "wall_time_s": self.wall_time_s.to_json(),
            "memory_peak_bytes": self.memory_peak_bytes.to_json(),
            "cores_peak": self.cores_peak.to_json(),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def stats(values: Sequence[float]) -> Stats:
    return Stats(
        len(values),
        percentile(values, 50),
        percentile(values, 95),
        max(values) if values else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _span(rep: dict[str, Any]) -> Span | None:
    start = _number(rep.get("started_at"))
    if start is None:
        return None
    end = _number(rep.get("finished_at"))
    if end is None:
        total = _number((rep.get("timings") or {}).get("total_s"))
        wall = _number((rep.get("resources") or {}).get("wall_time_s"))
        end = start + (total if total is not None else wall if wall is not None else 0.0)
    return Span(str(rep.get("host") or "?"), start, max(start, end), str(rep.get("status")))


def view_of(category: str, reports: Sequence[dict[str, Any]]) -> FunctionView:
    """The view of one function's reports."""
    counts: dict[str, int] = {}
    walls: list[float] = []
    mems: list[float] = []
    cores: list[float] = []
    hits = known = 0
    hosts: set[str] = set()
    spans: list[Span] = []
    for rep in reports:
        status = str(rep.get("status") or "unknown")
        counts[status] = counts.get(status, 0) + 1
        res = rep.get("resources") or {}
        for out, key in (
            (walls, "wall_time_s"),
            (mems, "memory_peak_bytes"),
            (cores, "cores_peak"),
        ):
            v = _number(res.get(key))
            if v is not None:
                out.append(v)
        hit = (rep.get("cache") or {}).get("hit")
        if isinstance(hit, bool):
            known += 1
            hits += hit
        if rep.get("host"):
            hosts.add(str(rep["host"]))
        span = _span(rep)
        if span is not None:
            spans.append(span)
    return FunctionView(
        category=category,
        runs=len(reports),
        statuses=tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        cache_hits=hits,
        cache_known=known,
        hosts=len(hosts),
        wall_time_s=stats(walls),
        memory_peak_bytes=stats(mems),
        cores_peak=stats(cores),
        wall_samples=tuple(walls),
        memory_samples=tuple(mems),
        spans=tuple(sorted(spans, key=lambda s: (s.start, s.host))),
    )


def campaign(reports: Iterable[dict[str, Any]]) -> tuple[FunctionView, ...]:
    """One view per function, sorted by name (reports without a target count as '?')."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rep in reports:
        groups.setdefault(category_of(rep) or "?", []).append(rep)
    return tuple(view_of(name, reps) for name, reps in sorted(groups.items()))


def to_json(
    views: Sequence[FunctionView], skipped: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_CAMPAIGN,
        "reports": sum(v.runs for v in views),
        "functions": [v.to_json() for v in views],
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
    }
