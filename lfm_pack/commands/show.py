"""`lfm-pack show`: one run report in detail, or a campaign of many as a per-function view.

One report gets the detailed table (status, resources, time breakdown, sparklines). Several
reports, or a directory of them (a Slurm array writes thousands), get one row per function:
runs, how they ended, cache hit rate, p50/p95/max of wall time, memory peak and cores, and the
allocation `lfm-pack suggest` would request. `--plot FILE.png|FILE.html` draws the same view.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click
from rich.table import Table

from lfm_pack.campaign import FunctionView, campaign, to_json
from lfm_pack.console import err
from lfm_pack.errors import InputFileError
from lfm_pack.jsonio import dumps
from lfm_pack.launch.render import summary_rows
from lfm_pack.models import SCHEMA_REPORT

EPILOG = """\b
Examples:
  lfm-pack show reports/simulate-node12-4242-20260101T120000.json
  lfm-pack show reports/                        # per-function summary of a whole campaign
  lfm-pack show reports/ --plot campaign.html   # histograms + timeline, no extra needed
  lfm-pack show reports/ --plot campaign.png    # needs matplotlib: pip install 'lfm-pack[plot]'
  lfm-pack show reports/*.json --json | jq '.[].resources.memory_peak_bytes'
  lfm-pack show reports/ --summary --json       # the per-function view as JSON
"""


def load_report(path: str) -> dict[str, Any]:
    """Read one report; a wrong file is an InputFileError with a hint, never a traceback."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read report {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_REPORT:
        raise InputFileError(
            f"{path} is not an {SCHEMA_REPORT} report",
            hint="reports come from `<name>-run --report FILE` or `lfm-pack monitor --report FILE`",
        )
    return data


def _load_all(
    paths: tuple[str, ...], skip_bad: bool
) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, str]]]:
    from lfm_pack.scale.reports import expand_paths

    for p in paths:
        if not os.path.exists(p):
            raise InputFileError(
                f"{p}: no such report file or directory",
                hint="reports are written by `<name>-run --report FILE` or into $LFM_REPORT_DIR",
            )
    files = expand_paths(paths)
    if not files:
        raise InputFileError(
            "no reports found in " + ", ".join(paths),
            hint="pass report files, or directories holding <name>-*.json reports",
        )
    loaded: list[tuple[str, dict[str, Any]]] = []
    skipped: list[tuple[str, str]] = []
    for f in files:
        try:
            loaded.append((f, load_report(f)))
        except InputFileError as exc:
            if not skip_bad:
                raise InputFileError(
                    exc.message, hint="pass --skip-bad to leave unreadable reports out"
                ) from None
            skipped.append((f, exc.message))
    if not loaded:
        raise InputFileError(f"none of the {len(files)} file(s) is a readable report")
    return loaded, skipped


def _marks(loaded: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """What `lfm-pack suggest` (max-throughput) would request, per function."""
    from lfm_pack.plots import Marks
    from lfm_pack.scale.reports import measurement_from_dict
    from lfm_pack.scale.suggest import suggest

    measurements = []
    for path, rep in loaded:
        try:
            measurements.append(measurement_from_dict(rep, path))
        except InputFileError:
            continue  # e.g. an infrastructure failure: no resources were measured
    return {
        s.name: Marks(s.memory_bytes, s.max_memory_bytes, float(s.wall_time_s))
        for s in suggest(measurements)
    }


def _seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.0f}M" if v >= 2**20 else f"{v / 1024:.0f}K"


def _render_campaign(views: tuple[FunctionView, ...], marks: dict[str, Any]) -> None:
    """One small block per function: readable in an 80-column Slurm log as in a wide terminal."""
    err.print(f"[bold]{sum(v.runs for v in views)} runs, {len(views)} function(s)[/]")
    for v in views:
        w, m, c = v.wall_time_s, v.memory_peak_bytes, v.cores_peak
        hit = v.cache_hit_rate
        table = Table(
            title=f"{v.category} — {v.runs} run(s) on {v.hosts} host(s)",
            show_header=False,
            title_justify="left",
        )
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("status", ", ".join(f"{k} {n}" for k, n in v.statuses))
        table.add_row("cache hit", "-" if hit is None else f"{hit:.0%} of {v.cache_known}")
        table.add_row(
            "wall time",
            f"p50 {_seconds(w.p50)} s · p95 {_seconds(w.p95)} s · max {_seconds(w.max)} s",
        )
        table.add_row("memory peak", f"p50 {_mib(m.p50)} · p95 {_mib(m.p95)} · max {_mib(m.max)}")
        table.add_row("cores peak", f"p50 {_seconds(c.p50)} · max {_seconds(c.max)}")
        mark = marks.get(v.category)
        if mark is not None:
            table.add_row(
                "suggest",
                f"memory {_mib(mark.memory_bytes)} (retry at {_mib(mark.max_memory_bytes)}), "
                f"wall time {int(mark.wall_time_s)} s — `lfm-pack suggest` gives the flags",
            )
        err.print(table)


@click.command("show", epilog=EPILOG)
@click.argument("reports", nargs=-1, required=True, type=click.Path())
@click.option(
    "--json", "as_json", is_flag=True, help="Print the reports (without time series) as JSON."
)
@click.option(
    "--summary",
    is_flag=True,
    help="The per-function campaign view even for one report (with --json: as JSON).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Draw the campaign: FILE.html (no extra) or FILE.png (needs matplotlib).",
)
@click.option("--skip-bad", is_flag=True, help="Leave unreadable or foreign files out.")
def command(
    reports: tuple[str, ...],
    as_json: bool,
    summary: bool,
    plot_path: str | None,
    skip_bad: bool,
) -> None:
    """Summarize run reports: one in detail, many (or a directory) per function."""
    loaded, skipped = _load_all(reports, skip_bad)
    for path, reason in skipped:
        err.print(f"[yellow]skipped[/] {path}: {reason}", soft_wrap=True)
    many = summary or len(loaded) > 1 or any(os.path.isdir(p) for p in reports)
    views = campaign(rep for _p, rep in loaded)
    if plot_path:
        from lfm_pack.plots import write_plot

        write_plot(views, _marks(loaded), plot_path, title=f"{len(loaded)} runs")
        err.print(f"wrote {plot_path}")
    if as_json:
        if summary:
            click.echo(dumps(to_json(views, skipped)))
        else:
            click.echo(
                dumps(
                    [
                        {k: v for k, v in rep.items() if k != "series"} | {"path": p}
                        for p, rep in loaded
                    ]
                )
            )
        return
    if many:
        _render_campaign(views, _marks(loaded))
        return
    path, rep = loaded[0]
    table = Table(title=path, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in summary_rows(rep):
        table.add_row(label, value)
    err.print(table)
