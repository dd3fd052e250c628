"""`lfm-pack suggest`: size the next submission of each function from its monitor reports."""

from __future__ import annotations

import click
from rich.table import Table

from lfm_pack.commands.common import emit, emit_json, json_option
from lfm_pack.console import err
from lfm_pack.errors import InputFileError, UsageError
from lfm_pack.jsonio import dumps
from lfm_pack.scale.policies import POLICIES
from lfm_pack.scale.reports import load_reports
from lfm_pack.scale.sizes import hms, human_bytes, parse_size
from lfm_pack.scale.suggest import (
    SizingOptions,
    Suggestion,
    htcondor_lines,
    parsl_spec,
    policies_for,
    slurm_flags,
    suggest,
)

EPILOG = """\b
Policies (Tovar et al., as in cctools' Work Queue categories):
  max             the largest peak seen (+1/3 bucket, rounded up): no retries
  min-waste       the first allocation minimising expected resource-time per task
  max-throughput  the first allocation maximising tasks per resource per time (default)
  Tasks that exceed a first allocation are meant to be retried at the max (shown as "retry").
\b
Examples:
  lfm-pack suggest reports/                           # table, one row per function
  lfm-pack suggest reports/ --policy all              # compare the three policies
  lfm-pack suggest reports/ --json                    # {"categories": [...]}
  sbatch $(lfm-pack suggest reports/ --category job.py:f --format slurm) job.sh
  lfm-pack suggest reports/ --format htcondor >> job.sub
  lfm-pack suggest reports/*.json --format parsl      # parsl_resource_specification
"""


def _render_table(items: tuple[Suggestion, ...]) -> None:
    """One row per category and policy; the retry (max) allocation in brackets."""
    table = Table(
        title="Suggested first allocations (retry at the max in brackets)",
        title_justify="left",
        header_style="bold",
        box=None,
        padding=(0, 1),
    )
    table.add_column("category", overflow="fold", min_width=16)
    table.add_column("policy", no_wrap=True)
    table.add_column("runs", no_wrap=True)
    for col in ("memory", "cores", "disk"):
        table.add_column(col, no_wrap=True)
    table.add_column("wall", no_wrap=True)
    for s in items:
        runs = str(s.tasks_seen) + (f"+{s.limited}!" if s.limited else "")
        disk = human_bytes(s.disk_bytes)
        if s.max_disk_bytes is not None and s.max_disk_bytes != s.disk_bytes:
            disk += f" ({human_bytes(s.max_disk_bytes)})"
        table.add_row(
            s.name,
            s.policy,
            runs,
            f"{human_bytes(s.memory_bytes)} ({human_bytes(s.max_memory_bytes)})",
            f"{s.cores} ({s.max_cores})",
            disk,
            hms(s.wall_time_s),
        )
    err.print(table)


def _render_format(items: tuple[Suggestion, ...], fmt: str) -> str:
    """The product for --format: bare when there is one entry, labelled when there are more."""
    single = len(items) == 1
    if fmt == "parsl":
        if single:
            return dumps(parsl_spec(items[0]))
        return dumps({f"{s.name} ({s.policy})": parsl_spec(s) for s in items})
    lines: list[str] = []
    for s in items:
        if not single:
            lines.append(f"# {s.name} ({s.policy})")
        if fmt == "slurm":
            lines.append(" ".join(slurm_flags(s)))
        else:
            lines.extend(htcondor_lines(s))
    return "\n".join(lines)


@click.command(name="suggest", epilog=EPILOG)
@click.argument("reports", nargs=-1, required=True, metavar="REPORT_OR_DIR...")
@click.option(
    "--policy",
    type=click.Choice([*POLICIES, "all"]),
    default="max-throughput",
    show_default=True,
    help="First-allocation policy.",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    metavar="NAME",
    help="Only these categories (repeatable).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "slurm", "htcondor", "parsl"]),
    default="table",
    show_default=True,
    help="Product on stdout: nothing (table only), sbatch flags, HTCondor submit lines or a Parsl resource_specification.",
)
@click.option(
    "--bucket-memory", default="250M", show_default=True, metavar="SIZE", help="Memory bucket."
)
@click.option(
    "--bucket-disk", default="250M", show_default=True, metavar="SIZE", help="Disk bucket."
)
@click.option(
    "--wall-margin",
    type=click.FloatRange(min=1.0),
    default=1.5,
    show_default=True,
    help="Wall time requested = longest run x this, rounded up to a minute.",
)
@click.option(
    "--skip-bad", is_flag=True, help="Skip unreadable reports with a warning instead of failing."
)
@json_option
def command(
    reports: tuple[str, ...],
    policy: str,
    categories: tuple[str, ...],
    fmt: str,
    bucket_memory: str,
    bucket_disk: str,
    wall_margin: float,
    skip_bad: bool,
    as_json: bool,
) -> None:
    """Group reports by function and suggest memory, cores, disk and wall time for each."""
    options = SizingOptions(
        memory_bucket=max(1, parse_size(bucket_memory)),
        disk_bucket=max(1, parse_size(bucket_disk)),
        wall_margin=wall_margin,
    )
    loaded = load_reports(reports, skip_bad=skip_bad)
    for _path, reason in loaded.skipped:
        err.print(f"[yellow]warning[/] skipped {reason}", soft_wrap=True)
    measurements = loaded.measurements
    if categories:
        known = {m.category for m in measurements}
        missing = [c for c in categories if c not in known]
        if missing:
            raise InputFileError(
                f"no reports for category {', '.join(missing)}",
                hint="categories seen: " + ", ".join(sorted(known)),
            )
        measurements = tuple(m for m in measurements if m.category in categories)
    items = suggest(measurements, policies_for(policy), options)
    if not items:
        raise InputFileError(
            "no report describes a finished run (all were lost to signals or infrastructure)",
            hint="sizing needs runs with status ok, error or limit",
        )
    for s in items:
        if s.limited:
            err.print(
                f"[yellow]warning[/] {s.name}: {s.limited} run(s) were killed at a limit; "
                "their peaks are lower bounds",
                soft_wrap=True,
            )
    if fmt == "slurm" and len(items) > 1 and not as_json:
        # `sbatch $(lfm-pack suggest ... --format slurm)` splices stdout into a command line:
        # labels or several flag sets there would become sbatch arguments. Ask, do not guess.
        names = sorted({s.name for s in items})
        raise UsageError(
            f"--format slurm needs one function and one policy; these reports hold "
            f"{len(names)} function(s) x {len(items) // max(1, len(names))} policy(ies): "
            + ", ".join(names[:5])
            + (" ..." if len(names) > 5 else ""),
            hint=f"add --category {names[0]!r} (and one --policy), or use --format htcondor/parsl",
        )
    _render_table(items)
    if as_json:
        emit_json(
            {
                "categories": [s.to_json() for s in items],
                "skipped": [{"path": p, "reason": r} for p, r in loaded.skipped],
            }
        )
    elif fmt != "table":
        emit(_render_format(items, fmt), None)
