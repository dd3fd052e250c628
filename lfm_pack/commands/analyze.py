"""`lfm-pack analyze`: what one function needs, with evidence and a pinned closure."""

from __future__ import annotations

import os

import click
from rich.table import Table

from lfm_pack.commands.common import emit, emit_json, env_options, json_option
from lfm_pack.console import err
from lfm_pack.errors import TargetError
from lfm_pack.models import Analysis

EPILOG = """\b
Targets:
  path/file.py:func      one function          path/file.py:Class.method
  path/file.py           the whole script      pkg.module[:func]  (on the target env's path)
\b
Examples:
  lfm-pack analyze examples/job.py:simulate
  lfm-pack analyze job.py:simulate --json > job.lock.json     # the lock `pack --lock` reads
  lfm-pack analyze job.py:simulate --format requirements > requirements.txt
  lfm-pack analyze job.py:simulate --format conda-env -o environment.yml
  lfm-pack analyze --why urllib3 job.py:fetch
  lfm-pack analyze --prefix ~/miniforge3/envs/sci job.py:a job.py:b
"""


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("../..") else rel


def render_table(a: Analysis) -> None:
    """The human view, on stderr."""
    err.print(
        f"[bold]{', '.join(t.raw for t in a.targets)}[/]  ·  Python {a.env.version_str} "
        f"({a.env.kind}: {a.env.prefix})"
    )
    imports = Table(title="Imports reached", title_justify="left", header_style="bold")
    for col in ("module", "kind", "distribution", "where", "notes"):
        imports.add_column(col)
    for r in sorted((*a.imports, *a.unresolved), key=lambda r: (r.kind, r.site.module)):
        notes = ", ".join(
            n
            for n, on in (
                ("optional", r.site.optional),
                ("dynamic", r.site.dynamic),
                (r.site.hint or "", bool(r.site.hint)),
            )
            if on
        )
        style = "red" if r.kind == "unresolved" and not r.site.optional else ""
        imports.add_row(
            r.site.module,
            r.kind,
            r.distribution or "",
            f"{_rel(r.site.location.path)}:{r.site.location.line}",
            notes,
            style=style,
        )
    err.print(imports)
    pkgs = Table(title="Pinned closure", title_justify="left", header_style="bold")
    for col in ("package", "version", "source", "why"):
        pkgs.add_column(col)
    for p in a.packages:
        why = "imported" if p.direct else "required by " + ", ".join(p.required_by)
        pkgs.add_row(p.name, p.version, p.source, why + (" (optional)" if p.optional else ""))
    err.print(pkgs)
    if a.local_files:
        err.print("[bold]Local files[/]: " + ", ".join(_rel(f) for f in a.local_files))
    for f in a.findings:
        colour = {"error": "red", "warning": "yellow"}.get(f.severity, "cyan")
        where = f" ({_rel(f.location.path)}:{f.location.line})" if f.location else ""
        err.print(f"[{colour}]{f.severity}[/] [{f.code}] {f.message}{where}", soft_wrap=True)


@click.command("analyze", epilog=EPILOG)
@click.argument("targets", nargs=-1, required=True)
@env_options
@json_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "requirements", "conda-env"]),
    default=None,
    help="Output format (default: a table on stderr; --json = --format json).",
)
@click.option("--why", "why_name", metavar="NAME", help="Explain why NAME is in the closure.")
@click.option("-o", "--output", metavar="FILE", help="Write the product to FILE (atomically).")
def command(
    targets: tuple[str, ...],
    python: str | None,
    prefix: str | None,
    as_json: bool,
    fmt: str | None,
    why_name: str | None,
    output: str | None,
) -> None:
    """Find exactly what TARGET... reaches and the pinned distributions it needs.

    Never imports or runs the analysed code; the target environment is probed in a
    subprocess. Several targets give the union, each import keeping its evidence.
    """
    # Imported here so `--help` and the other subcommands start without libcst.
    from lfm_pack.analyze import closure, formats
    from lfm_pack.analyze.pipeline import run_analysis
    from lfm_pack.lock import analysis_to_json

    fmt = "json" if as_json else (fmt or "table")
    with err.status("analyzing…", spinner="dots"):
        analysis = run_analysis(targets, python=python, prefix=prefix)
    if why_name:
        chains = closure.why(why_name, analysis)
        if not chains:
            raise TargetError(
                f"{why_name} is not in the closure of {', '.join(targets)}",
                hint="run without --why to see the closure",
            )
        if fmt == "json":
            emit_json({"name": why_name, "chains": chains}, output)
        else:
            emit("\n".join(" -> ".join(chain) for chain in chains), output)
        return
    if fmt == "json":
        emit_json(analysis_to_json(analysis), output)
    elif fmt == "requirements":
        emit(formats.to_requirements(analysis), output)
    elif fmt == "conda-env":
        emit(formats.to_conda_env(analysis), output)
    else:
        render_table(analysis)
        if output:
            emit_json(analysis_to_json(analysis), output)
