"""Draw a campaign (many reports): per-function histograms with the suggested allocation on
them, and a timeline of runs per host — as PNG (matplotlib, the `lfm-pack[plot]` extra) or as
one self-contained HTML file (inline SVG, no extra, opens on any laptop).

The picture answers "what should I ask the scheduler for": where the memory peaks and wall
times of each function fall, and where `lfm-pack suggest`'s first allocation (solid) and retry
maximum (dashed) sit on them. Files are written to a temp name and renamed.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass

from lfm_pack.campaign import FunctionView, Span
from lfm_pack.errors import LfmError
from lfm_pack.jsonio import atomic_open

MIB = 2**20
STATUS_COLORS = {
    "ok": "#2e7d32",
    "error": "#c62828",
    "limit": "#ef6c00",
    "signal": "#6a1b9a",
    "crashed": "#4e342e",
    "infrastructure": "#546e7a",
}
MAX_FUNCTIONS = 12  # beyond this a figure is unreadable; the rest are named, not drawn


class PlotError(LfmError):
    """The plot cannot be made (missing extra, unknown format)."""

    exit_code = 2  # a usage problem: the user asked for something this install cannot do


@dataclass(frozen=True)
class Marks:
    """The allocation to draw on one function's histograms (None: nothing to draw)."""

    memory_bytes: int | None = None
    max_memory_bytes: int | None = None
    wall_time_s: float | None = None


def wall_mark(view: FunctionView, marks: Marks) -> float | None:
    """The suggested wall time, when drawing it keeps the runs readable.

    Suggestions are rounded up to whole minutes: for 0.4 s tasks a line at 60 s would squash
    every bar into the first pixel, so it is left off (the table still says it).
    """
    w = marks.wall_time_s
    if w is None or not view.wall_samples or w > 3 * max(view.wall_samples):
        return None
    return w


def histogram(values: Sequence[float], bins: int = 20) -> tuple[list[float], list[int]]:
    """(edges, counts) of equal-width bins over [min, max]; one bin when all values agree."""
    if not values:
        return [0.0, 1.0], [0]
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [lo, lo + (abs(lo) or 1.0) * 0.01], [len(values)]
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return [lo + i * width for i in range(bins + 1)], counts


def write_plot(
    views: Sequence[FunctionView], marks: dict[str, Marks], path: str, title: str = ""
) -> str:
    """Write the PNG or HTML `path` (by extension); returns the format written."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".html", ".htm"):
        with atomic_open(path, "w") as fh:
            fh.write(render_html(views, marks, title))
        return "html"
    if ext == ".png":
        _render_png(views, marks, path, title)
        return "png"
    raise PlotError(
        f"--plot {path}: unknown format {ext or '(none)'}",
        hint="give a .png (needs matplotlib: pip install 'lfm-pack[plot]') or a .html file",
    )


# ---------------------------------------------------------------------------------------- PNG


def _render_png(
    views: Sequence[FunctionView], marks: dict[str, Marks], path: str, title: str
) -> None:
    import importlib
    from typing import Any

    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise PlotError(
            "--plot FILE.png needs matplotlib, which is not installed here",
            hint="pip install 'lfm-pack[plot]', or write --plot FILE.html (no extra needed)",
        ) from None
    shown = list(views[:MAX_FUNCTIONS])
    rows = len(shown) + 1
    fig = plt.figure(figsize=(11, 2.6 * rows))
    grid = fig.add_gridspec(rows, 2)
    for i, v in enumerate(shown):
        m = marks.get(v.category, Marks())
        ax_mem = fig.add_subplot(grid[i, 0])
        ax_wall = fig.add_subplot(grid[i, 1])
        _png_hist(ax_mem, [x / MIB for x in v.memory_samples], "memory peak (MiB)", v.category)
        _png_hist(ax_wall, list(v.wall_samples), "wall time (s)", v.category)
        if m.memory_bytes is not None:
            ax_mem.axvline(m.memory_bytes / MIB, color="k", label="suggested")
        if m.max_memory_bytes is not None:
            ax_mem.axvline(m.max_memory_bytes / MIB, color="k", ls="--", label="retry max")
        wall = wall_mark(v, m)
        if wall is not None:
            ax_wall.axvline(wall, color="k", label="suggested")
        if m.memory_bytes is not None or m.max_memory_bytes is not None:
            ax_mem.legend(fontsize="x-small")
    ax_t = fig.add_subplot(grid[rows - 1, :])
    hosts, t0 = _timeline_axes([s for v in shown for s in v.spans])
    for v in shown:
        for s in v.spans:
            ax_t.barh(
                hosts.index(s.host),
                s.end - s.start,
                left=s.start - t0,
                height=0.8,
                color=STATUS_COLORS.get(s.status, "#9e9e9e"),
            )
    ax_t.set_yticks(range(len(hosts)), hosts, fontsize="x-small")
    ax_t.set_xlabel("seconds since the first start")
    ax_t.set_title("runs per host (green ok, red error, orange limit, purple signal)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = f"{path}.{os.getpid()}.tmp.png"
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)


def _png_hist(ax: object, values: list[float], xlabel: str, category: str) -> None:
    from typing import Any

    a: Any = ax
    edges, counts = histogram(values)
    widths = [edges[i + 1] - edges[i] for i in range(len(counts))]
    a.bar(edges[:-1], counts, width=widths, align="edge", color="#90caf9", edgecolor="#1565c0")
    a.set_xlabel(xlabel)
    a.set_ylabel("runs")
    a.set_title(category, fontsize="small")


def _timeline_axes(spans: Sequence[Span]) -> tuple[list[str], float]:
    hosts = sorted({s.host for s in spans}) or ["?"]
    t0 = min((s.start for s in spans), default=0.0)
    return hosts, t0


# --------------------------------------------------------------------------------------- HTML

_W, _H, _PAD = 460, 170, 34


def _svg_hist(values: Sequence[float], xlabel: str, lines: Sequence[tuple[float, str]]) -> str:
    edges, counts = histogram(values)
    lo = min([edges[0], *(x for x, _ in lines)])
    hi = max([edges[-1], *(x for x, _ in lines)])
    span = (hi - lo) or 1.0
    top = max(counts) or 1

    def x(v: float) -> float:
        return _PAD + (v - lo) / span * (_W - 2 * _PAD)

    def y(c: float) -> float:
        return _H - _PAD - c / top * (_H - 2 * _PAD)

    parts = [f'<svg width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">']
    for i, c in enumerate(counts):
        x0, x1 = x(edges[i]), x(edges[i + 1])
        parts.append(
            f'<rect x="{x0:.1f}" y="{y(c):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
            f'height="{_H - _PAD - y(c):.1f}" fill="#90caf9" stroke="#1565c0">'
            f"<title>{edges[i]:.3g}–{edges[i + 1]:.3g}: {c}</title></rect>"
        )
    for v, style in lines:
        dash = ' stroke-dasharray="5,4"' if style == "dashed" else ""
        parts.append(
            f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{_PAD / 2}" y2="{_H - _PAD}" '
            f'stroke="black"{dash}><title>{v:.4g}</title></line>'
        )
    base = _H - _PAD
    parts.append(f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{base}" y2="{base}" stroke="#555"/>')
    parts.append(f'<text x="{_PAD}" y="{_H - 8}" font-size="11">{lo:.4g}</text>')
    parts.append(
        f'<text x="{_W - _PAD}" y="{_H - 8}" font-size="11" text-anchor="end">{hi:.4g}</text>'
    )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" font-size="11" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
    )
    parts.append(f'<text x="4" y="{_PAD / 2 + 4}" font-size="11">{top} runs</text></svg>')
    return "".join(parts)


def _svg_timeline(spans: Sequence[Span]) -> str:
    hosts, t0 = _timeline_axes(spans)
    t1 = max((s.end for s in spans), default=t0 + 1.0)
    width, row = 940, 16
    height = _PAD + row * len(hosts) + 24
    label = 110
    scale = (width - label - 10) / ((t1 - t0) or 1.0)
    parts = [f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">']
    for i, h in enumerate(hosts):
        parts.append(
            f'<text x="4" y="{_PAD + i * row + 12}" font-size="11">{html.escape(h[:16])}</text>'
        )
    for s in spans:
        x0 = label + (s.start - t0) * scale
        parts.append(
            f'<rect x="{x0:.1f}" y="{_PAD + hosts.index(s.host) * row + 2}" '
            f'width="{max((s.end - s.start) * scale, 1):.1f}" height="{row - 4}" '
            f'fill="{STATUS_COLORS.get(s.status, "#9e9e9e")}" opacity="0.8">'
            f"<title>{html.escape(s.host)} {s.status} {s.end - s.start:.3g} s</title></rect>"
        )
    parts.append(
        f'<text x="{label}" y="{height - 6}" font-size="11">0 s</text>'
        f'<text x="{width - 10}" y="{height - 6}" font-size="11" text-anchor="end">'
        f"{t1 - t0:.4g} s since the first start</text></svg>"
    )
    return "".join(parts)


def render_html(views: Sequence[FunctionView], marks: dict[str, Marks], title: str = "") -> str:
    """One self-contained HTML page (inline SVG) for the campaign."""
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title or 'lfm-pack campaign')}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "th:first-child,td:first-child{text-align:left}</style></head><body>",
        f"<h1>{esc(title or 'lfm-pack campaign')}</h1>",
        "<p>Solid line: the first allocation <code>lfm-pack suggest</code> would request "
        "(max-throughput); dashed: the retry maximum.</p>",
    ]
    for v in views[:MAX_FUNCTIONS]:
        m = marks.get(v.category, Marks())
        mem_lines = [
            (b / MIB, style)
            for b, style in ((m.memory_bytes, "solid"), (m.max_memory_bytes, "dashed"))
            if b is not None
        ]
        wall = wall_mark(v, m)
        wall_lines = [(wall, "solid")] if wall is not None else []
        hit = v.cache_hit_rate
        out.append(f"<h2>{esc(v.category)}</h2><table><tr><th>runs</th><th>status</th>")
        out.append("<th>cache hits</th><th>hosts</th></tr>")
        out.append(
            f"<tr><td>{v.runs}</td><td>{esc(', '.join(f'{k} {n}' for k, n in v.statuses))}</td>"
            f"<td>{'-' if hit is None else f'{hit:.0%}'}</td><td>{v.hosts}</td></tr></table>"
        )
        out.append(_svg_hist([x / MIB for x in v.memory_samples], "memory peak (MiB)", mem_lines))
        out.append(_svg_hist(list(v.wall_samples), "wall time (s)", wall_lines))
    if len(views) > MAX_FUNCTIONS:
        rest = ", ".join(v.category for v in views[MAX_FUNCTIONS:])
        out.append(f"<p>Not drawn ({len(views) - MAX_FUNCTIONS} more): {esc(rest)}</p>")
    out.append("<h2>Runs per host</h2>")
    out.append(_svg_timeline([s for v in views for s in v.spans]))
    out.append("</body></html>\n")
    return "".join(out)
