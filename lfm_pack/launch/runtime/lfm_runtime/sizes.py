"""Parse and print byte sizes (`2G`, `500M`, `1.5GiB`): limits are typed by people.

The one grammar for sizes in lfm-pack: the host (`lfm_pack.scale.sizes`, the CLI, `suggest`,
`submit`) uses these functions, so a size means the same on the submit host and on the node.
Single letters are binary (K = 1024, as in Slurm's `--mem`), `KiB/MiB/...` binary, `KB/MB/...`
decimal; fractions round *up* to the byte (a limit is never smaller than what was written).
"""

from __future__ import annotations

import math
import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """`2G` -> 2 GiB (single letters are binary, as in Slurm), `2GB` -> 2e9, `123` -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M, 2G, 1.5GiB, 1000000)")
    value = math.ceil(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def format_size(n: float | None) -> str:
    """Human size with binary units, e.g. 512.0 MiB."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else (f"{value:.1f} {unit}")
        value /= 1024
    return f"{value:.1f} TiB"


def short_size(n_bytes: int | None) -> str:
    """Short form for tables and scheduler requests, in the grammar above: 750M, 1.5G, 512B."""
    if n_bytes is None:
        return "-"
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n_bytes >= size:
            text = f"{n_bytes / size:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{n_bytes}B"
