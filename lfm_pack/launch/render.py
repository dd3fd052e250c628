"""Reports for people: summary rows and terminal sparklines (pure functions, no I/O)."""

from __future__ import annotations

from typing import Any

from lfm_pack.launch.runtime.lfm_runtime.sizes import format_size

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    """Resample `values` to at most `width` buckets (max per bucket) and draw them."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [
            max(values[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            for i in range(width)
        ]
    top = max(values)
    if top <= 0:
        return BARS[0] * len(values)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))] for v in values)


def summary_rows(rep: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs describing one report."""
    res = rep.get("resources") or {}
    t = rep.get("timings") or {}
    cache = rep.get("cache") or {}
    target = rep.get("target") or {}
    rows = [
        (
            "target",
            str(target.get("raw") or " ".join(map(str, target.get("command") or [])) or "-"),
        ),
        (
            "status",
            f"{rep.get('status')} (exit {rep.get('exit_code')}, ended by {rep.get('ended_by')})",
        ),
        ("host", str(rep.get("host"))),
        (
            "cache",
            "-"
            if not cache
            else f"{'hit' if cache.get('hit') else 'miss'} {cache.get('path') or ''}",
        ),
    ]
    if res:
        rows += [
            ("wall time", f"{res.get('wall_time_s', 0):.3f} s"),
            (
                "cpu time",
                f"{res.get('cpu_time_s', 0):.3f} s (user {res.get('cpu_user_s', 0):.3f}, sys {res.get('cpu_sys_s', 0):.3f})",
            ),
            ("cores", f"peak {res.get('cores_peak', 0):.2f}, avg {res.get('cores_avg', 0):.2f}"),
            (
                "memory (tree)",
                f"{format_size(res.get('memory_peak_bytes'))} at {(res.get('peak_times_s') or {}).get('memory')} s",
            ),
            ("memory (largest process)", format_size(res.get("memory_peak_process_bytes"))),
            ("virtual memory", format_size(res.get("virtual_memory_peak_bytes"))),
            (
                "read / written",
                f"{format_size(res.get('bytes_read'))} / {format_size(res.get('bytes_written'))}",
            ),
            (
                "processes",
                f"max {res.get('max_concurrent_processes')} concurrent, {res.get('total_processes')} total",
            ),
        ]
        if res.get("disk_peak_bytes") is not None:
            rows.append(("disk (working dir)", format_size(res.get("disk_peak_bytes"))))
    keys = (
        "cache_wait_s",
        "unpack_s",
        "interpreter_start_s",
        "target_import_s",
        "call_s",
        "total_s",
    )
    parts = [f"{k[:-2]} {t[k]:.3f}" for k in keys if isinstance(t.get(k), (int, float))]
    if parts:
        rows.append(("timings (s)", ", ".join(parts)))
    for name, info in (rep.get("limits_exceeded") or {}).items():
        rows.append(
            (
                "LIMIT EXCEEDED",
                f"{name}: observed {info.get('observed')} > {info.get('limit')} ({info.get('enforced_by')})",
            )
        )
    err = rep.get("error")
    if err:
        rows.append(("error", f"{err.get('type')}: {err.get('message')}"))
    series = rep.get("series") or {}
    if series.get("memory_bytes"):
        rows.append(("memory over time", sparkline([float(v) for v in series["memory_bytes"]])))
        rows.append(("cores over time", sparkline([float(v) for v in series.get("cores") or []])))
    return rows
