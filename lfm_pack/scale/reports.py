"""Read monitor reports (schema lfm-pack.report/1) into the few numbers sizing needs.

Sizing must never silently learn from garbage: a report that is not JSON, has another schema or
lacks the measured resources raises `InputFileError` naming the file, and the caller decides
whether that stops the run or is skipped with a warning (`--skip-bad`).
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lfm_pack.errors import InputFileError
from lfm_pack.models import SCHEMA_REPORT

#: Reports of runs whose measurements describe the function (it ran to its end or raised).
MEASURED_STATUSES = frozenset({"ok", "error"})
#: Reports of runs that were killed at a limit: their peaks are lower bounds only.
LIMIT_STATUSES = frozenset({"limit"})


@dataclass(frozen=True)
class Measurement:
    """What one report says about one run of one function (category)."""

    path: str
    category: str
    status: str
    memory_bytes: int
    cores: float  # peak cores (a sampled ratio, may be fractional)
    wall_time_s: float
    disk_bytes: int | None = None

    @property
    def complete(self) -> bool:
        """True when the run ended by itself, so its peaks are the function's real needs."""
        return self.status in MEASURED_STATUSES


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _limit_seen(limits: Any, key: str) -> float | None:
    """The value a fired limit saw, whether the monitor wrote a number or {"seen": n, ...}."""
    if not isinstance(limits, dict):
        return None
    entry = limits.get(key)
    direct = _number(entry)
    if direct is not None:
        return direct
    if isinstance(entry, dict):
        for name in ("seen", "value", "measured", "peak"):
            found = _number(entry.get(name))
            if found is not None:
                return found
    return None


def category_of(data: dict[str, Any]) -> str | None:
    """The function a report belongs to: an explicit `category`, else the launcher's target.

    The launcher writes `target` as an object (`{"raw", "module", "qualname", "kind"}`); older
    or hand-written reports may carry a plain string. `name` (the pack name) is the last resort.
    """
    for value in (data.get("category"), data.get("target"), data.get("name")):
        if isinstance(value, dict):
            command = value.get("command")
            if isinstance(command, list) and command:
                value = shlex.join(str(c) for c in command)
            else:
                value = value.get("raw") or value.get("qualname")
        if isinstance(value, str) and value:
            return value
    return None


def measurement_from_dict(data: Any, path: str) -> Measurement:
    """Validate one decoded report; raise InputFileError naming `path` when it is unusable."""
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: not a report (a JSON object is expected)")
    schema = data.get("schema")
    if schema != SCHEMA_REPORT:
        raise InputFileError(
            f"{path}: schema {schema!r} is not {SCHEMA_REPORT!r}",
            hint="pass reports written by a <name>-run launcher (--report FILE)",
        )
    category = category_of(data)
    if not category:
        raise InputFileError(f"{path}: report names no target/category")
    status = data.get("status")
    if not isinstance(status, str):
        raise InputFileError(f"{path}: report has no status")
    res = data.get("resources")
    if not isinstance(res, dict):
        raise InputFileError(f"{path}: report has no resources")
    memory = _number(res.get("memory_peak_bytes"))
    wall = _number(res.get("wall_time_s"))
    if memory is None or wall is None:
        raise InputFileError(
            f"{path}: resources.memory_peak_bytes / resources.wall_time_s missing or not numbers"
        )
    cores = _number(res.get("cores_peak"))
    if cores is None:
        cpu = _number(res.get("cpu_time_s"))
        cores = cpu / wall if cpu is not None and wall > 0 else 1.0
    disk = _number(res.get("disk_bytes"))
    limits = data.get("limits_exceeded")
    seen_mem = _limit_seen(limits, "memory")
    if seen_mem is not None:
        memory = max(memory, seen_mem)
    seen_wall = _limit_seen(limits, "wall_time")
    if seen_wall is not None:
        wall = max(wall, seen_wall)
    return Measurement(
        path=path,
        category=category,
        status=status,
        memory_bytes=math.ceil(memory),
        cores=cores,
        wall_time_s=wall,
        disk_bytes=None if disk is None else math.ceil(disk),
    )


def load_report(path: str | os.PathLike[str]) -> Measurement:
    """Read and validate one report file."""
    p = str(path)
    try:
        with open(p, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputFileError(f"{p}: no such report") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{p}: cannot read report ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})",
            hint="a truncated report? pass --skip-bad to ignore it",
        ) from None
    return measurement_from_dict(data, p)


def expand_paths(paths: list[str] | tuple[str, ...]) -> list[str]:
    """Files as given, directories expanded to their *.json files (recursively, sorted)."""
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(str(f) for f in sorted(p.rglob("*.json")) if f.is_file())
        else:
            out.append(raw)
    return out


@dataclass(frozen=True)
class Loaded:
    """Measurements read from many reports, and what was skipped (path, reason)."""

    measurements: tuple[Measurement, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def load_reports(paths: list[str] | tuple[str, ...], skip_bad: bool = False) -> Loaded:
    """Load every report under `paths`; the first bad one raises unless `skip_bad`."""
    files = expand_paths(paths)
    if not files:
        raise InputFileError(
            "no reports found in " + ", ".join(paths or ["(nothing)"]),
            hint="pass report files or directories holding <name>-<task>.json reports",
        )
    good: list[Measurement] = []
    skipped: list[tuple[str, str]] = []
    for f in files:
        try:
            good.append(load_report(f))
        except InputFileError as exc:
            if not skip_bad:
                raise
            skipped.append((f, exc.message))
    if not good:
        raise InputFileError(
            f"none of the {len(files)} report file(s) is usable",
            hint=skipped[0][1] if skipped else None,
        )
    return Loaded(tuple(good), tuple(skipped))
