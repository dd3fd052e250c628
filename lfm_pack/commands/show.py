"""`lfm-pack show`: render run reports (lfm-pack.report/1) for people, or plot them."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from lfm_pack.console import err
from lfm_pack.errors import InputFileError, LfmError
from lfm_pack.jsonio import dumps
from lfm_pack.launch.render import summary_rows
from lfm_pack.models import SCHEMA_REPORT

EPILOG = """\b
Examples:
  lfm-pack show reports/simulate-node12-4242-20260101T120000.json
  lfm-pack show reports/*.json --json | jq '.[].resources.memory_peak_bytes'
  lfm-pack show run.json --plot run.png        # needs matplotlib
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


def plot(reports: list[tuple[str, dict[str, Any]]], out: str) -> None:
    """Memory and cores over time, one line per report, into a PNG."""
    import importlib

    try:
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise LfmError(
            "--plot needs matplotlib, which is not installed",
            hint="pip install matplotlib (or use the sparklines of `lfm-pack show`)",
        ) from None
    fig, (ax_mem, ax_cpu) = plt.subplots(2, 1, sharex=True, figsize=(8, 5))
    for path, rep in reports:
        s = rep.get("series") or {}
        t = s.get("t_s") or []
        ax_mem.plot(t, [v / 2**20 for v in s.get("memory_bytes") or []], label=path)
        ax_cpu.plot(t, s.get("cores") or [], label=path)
    ax_mem.set_ylabel("memory (MiB)")
    ax_cpu.set_ylabel("cores")
    ax_cpu.set_xlabel("time (s)")
    ax_mem.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out)


@click.command("show", epilog=EPILOG)
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the reports (without time series) as JSON."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Write memory/cores plots to a PNG.",
)
def command(reports: tuple[str, ...], as_json: bool, plot_path: str | None) -> None:
    """Summarize run reports: status, resources, time breakdown and sparklines."""
    loaded = [(p, load_report(p)) for p in reports]
    if plot_path:
        plot(loaded, plot_path)
        err.print(f"wrote {plot_path}")
    if as_json:
        click.echo(
            dumps(
                [{k: v for k, v in rep.items() if k != "series"} | {"path": p} for p, rep in loaded]
            )
        )
        return
    for path, rep in loaded:
        table = Table(title=path, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for label, value in summary_rows(rep):
            table.add_row(label, value)
        err.print(table)
