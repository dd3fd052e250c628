"""Sizes and durations as people and schedulers write them ("250M", "1.5G", "01:30:00").

Single letters are binary (K = 1024 bytes, M = 1024² …) because that is what Slurm's `--mem`
and the launcher's `--memory` mean; "KiB/MiB/GiB" are binary too and "KB/MB/GB" decimal: the
grammar is the node runtime's own (`lfm_runtime.sizes`), so suggest, submit and the launcher
agree on every size.
"""

from __future__ import annotations

import math
import re

from lfm_pack.errors import LfmError
from lfm_pack.launch.runtime.lfm_runtime import sizes as _runtime_sizes

KIB = 1024
MIB = 1024**2
GIB = 1024**3


class SizeError(LfmError):
    """A size or duration on the command line does not parse (exit code: usage)."""

    exit_code = 2


def parse_size(text: str) -> int:
    """Parse a size: "250M" -> 262144000 bytes; a bare number is bytes. Raises SizeError on garbage."""
    try:
        return _runtime_sizes.parse_size(text)
    except ValueError as exc:
        raise SizeError(
            str(exc), hint="write a positive number with an optional K/M/G/T suffix, e.g. 250M"
        ) from None


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "15m", "2h", "1d" or "[D-]HH:MM:SS" / "MM:SS"."""
    t = text.strip()
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?)\s*([smhd]?)", t, re.IGNORECASE)
    if m:
        mult = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]
        return float(m.group(1)) * mult
    m = re.fullmatch(r"(?:([0-9]+)-)?([0-9]+):([0-9]{1,2})(?::([0-9]{1,2}))?", t)
    if m:
        days = int(m.group(1) or 0)
        if m.group(4) is None:  # MM:SS
            hours, minutes, seconds = 0, int(m.group(2)), int(m.group(3))
        else:
            hours, minutes, seconds = int(m.group(2)), int(m.group(3)), int(m.group(4))
        return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
    raise SizeError(f"not a duration: {text!r}", hint="write seconds (300), 15m, 2h or HH:MM:SS")


def to_mib(n_bytes: int) -> int:
    """Whole MiB, rounded up (a request must never be smaller than the measurement)."""
    return max(1, -(-n_bytes // MIB))


def human_bytes(n_bytes: int | None) -> str:
    """Short human form for tables: 750M, 1.5G (the runtime's `short_size`)."""
    return _runtime_sizes.short_size(n_bytes)


def hms(seconds: float) -> str:
    """Slurm/PBS wall time: [D-]HH:MM:SS, rounded up to the second."""
    total = max(0, math.ceil(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    core = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{core}" if days else core
