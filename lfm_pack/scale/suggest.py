"""Size every function (category) from its reports: first allocations and scheduler flags.

Reports of complete runs (status ok/error) fill the histograms the policies read; runs killed at
a limit only raise the maximum (their peaks are lower bounds); runs lost to a signal or to
infrastructure say nothing about the function and are left out. Wall time is not a policy
choice: a task that runs out of time is lost, so every policy requests the longest run seen
times a margin, rounded up to a minute.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lfm_pack.scale.policies import POLICIES, Policy, build_histogram, first_allocation, max_seen
from lfm_pack.scale.reports import LIMIT_STATUSES, Measurement
from lfm_pack.scale.sizes import MIB, hms, to_mib

DEFAULT_MEMORY_BUCKET = 250 * MIB
DEFAULT_DISK_BUCKET = 250 * MIB
DEFAULT_WALL_MARGIN = 1.5
#: cores_peak is a sampled ratio; a reading this close above an integer counts as that integer
CORES_TOLERANCE = 0.1


@dataclass(frozen=True)
class SizingOptions:
    """Knobs of the sizing (bucket sizes in bytes, wall-time margin as a factor)."""

    memory_bucket: int = DEFAULT_MEMORY_BUCKET
    disk_bucket: int = DEFAULT_DISK_BUCKET
    wall_margin: float = DEFAULT_WALL_MARGIN


@dataclass(frozen=True)
class Suggestion:
    """The first allocation of one category under one policy, plus the retry (max) values."""

    name: str
    policy: Policy
    memory_bytes: int
    cores: int
    wall_time_s: int
    disk_bytes: int | None
    tasks_seen: int  # complete runs the histograms were built from
    max_memory_bytes: int  # the retry allocation (policy "max")
    max_cores: int
    max_disk_bytes: int | None
    limited: int = 0  # runs killed at a limit (their peaks count as lower bounds)
    ignored: int = 0  # runs lost to a signal or infrastructure

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def whole_cores(peak: float) -> int:
    """Cores to request for a measured peak: ceil, forgiving sampling noise, at least 1."""
    return max(1, math.ceil(peak - CORES_TOLERANCE))


def group_by_category(measurements: Iterable[Measurement]) -> dict[str, list[Measurement]]:
    groups: dict[str, list[Measurement]] = {}
    for m in measurements:
        groups.setdefault(m.category, []).append(m)
    return dict(sorted(groups.items()))


def _allocation(
    samples: Sequence[tuple[float, float]],
    lower_bounds: Sequence[float],
    bucket: int,
    policy: Policy,
) -> tuple[int, int]:
    """(first allocation, retry allocation) for one resource."""
    base = samples if samples else [(v, 0.0) for v in lower_bounds]
    h = build_histogram(base, bucket)
    if lower_bounds:
        h = dataclasses.replace(h, max_value=max(h.max_value, *lower_bounds))
    return first_allocation(h, policy), max_seen(h)


def suggest_category(
    name: str, runs: Sequence[Measurement], policy: Policy, options: SizingOptions | None = None
) -> Suggestion:
    """The first allocation for one category's runs under `policy`."""
    opts = options or SizingOptions()
    complete = [m for m in runs if m.complete]
    limited = [m for m in runs if m.status in LIMIT_STATUSES]
    ignored = len(runs) - len(complete) - len(limited)
    usable = complete + limited
    if not usable:
        raise ValueError(f"category {name!r} has no measured run")
    mem, mem_max = _allocation(
        [(m.memory_bytes, m.wall_time_s) for m in complete],
        [m.memory_bytes for m in limited],
        opts.memory_bucket,
        policy,
    )
    cores, cores_max = _allocation(
        [(whole_cores(m.cores), m.wall_time_s) for m in complete],
        [whole_cores(m.cores) for m in limited],
        1,
        policy,
    )
    with_disk = [m for m in complete if m.disk_bytes is not None]
    limited_disk = [m for m in limited if m.disk_bytes is not None]
    disk: int | None = None
    disk_max: int | None = None
    if with_disk or limited_disk:
        disk, disk_max = _allocation(
            [(float(m.disk_bytes or 0), m.wall_time_s) for m in with_disk],
            [float(m.disk_bytes or 0) for m in limited_disk],
            opts.disk_bucket,
            policy,
        )
    longest = max(m.wall_time_s for m in usable)
    wall = max(60, math.ceil(longest * opts.wall_margin / 60.0) * 60)
    return Suggestion(
        name=name,
        policy=policy,
        memory_bytes=mem,
        cores=cores,
        wall_time_s=wall,
        disk_bytes=disk,
        tasks_seen=len(complete),
        max_memory_bytes=mem_max,
        max_cores=cores_max,
        max_disk_bytes=disk_max,
        limited=len(limited),
        ignored=ignored,
    )


def suggest(
    measurements: Iterable[Measurement],
    policies: Sequence[Policy] = ("max-throughput",),
    options: SizingOptions | None = None,
) -> tuple[Suggestion, ...]:
    """One suggestion per category and policy, categories sorted by name."""
    out: list[Suggestion] = []
    for name, runs in group_by_category(measurements).items():
        if not any(m.complete or m.status in LIMIT_STATUSES for m in runs):
            continue
        for policy in policies:
            out.append(suggest_category(name, runs, policy, options))
    return tuple(out)


def policies_for(choice: str) -> tuple[Policy, ...]:
    """'all' -> every policy; otherwise the one named."""
    if choice == "all":
        return POLICIES
    for p in POLICIES:
        if p == choice:
            return (p,)
    raise ValueError(f"unknown policy {choice!r}")


# --- ready-made flags ---------------------------------------------------------------------------


def slurm_flags(s: Suggestion) -> list[str]:
    """sbatch options: memory in MiB (Slurm's M is MiB), cores per task, wall time."""
    flags = [
        f"--mem={to_mib(s.memory_bytes)}M",
        f"--cpus-per-task={s.cores}",
        f"--time={hms(s.wall_time_s)}",
    ]
    if s.disk_bytes is not None:
        flags.append(f"--tmp={to_mib(s.disk_bytes)}M")
    return flags


def htcondor_lines(s: Suggestion) -> list[str]:
    """Submit-description commands (explicit MB units: request_disk defaults to KiB)."""
    lines = [f"request_memory = {to_mib(s.memory_bytes)}MB", f"request_cpus = {s.cores}"]
    if s.disk_bytes is not None:
        lines.append(f"request_disk = {to_mib(s.disk_bytes)}MB")
    return lines


def parsl_spec(s: Suggestion) -> dict[str, int]:
    """Parsl's per-app `parsl_resource_specification` (memory/disk in MB, time in minutes)."""
    spec = {
        "cores": s.cores,
        "memory": to_mib(s.memory_bytes),
        "running_time_min": max(1, math.ceil(s.wall_time_s / 60)),
    }
    if s.disk_bytes is not None:
        spec["disk"] = to_mib(s.disk_bytes)
    return spec
