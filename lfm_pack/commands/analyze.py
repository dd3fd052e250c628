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
  lfm-pack analyze --why sklearn job.py:fit        # import names work too
  lfm-pack analyze --source-root ../lib job.py:run  # a directory the code puts on sys.path
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
        reasons = [
            {"<import>": "imported", "<include>": "--include"}.get(r, f"required by {r}")
            for r in p.required_by
        ]
        why = ", ".join(reasons) or ("imported" if p.direct else "")
        pkgs.add_row(p.name, p.version, p.source, why + (" (optional)" if p.optional else ""))
    err.print(pkgs)
    for e in a.editables:
        err.print(
            f"[bold]Editable[/] {e.name} {e.version} ({e.style}, {e.mode}): your own code, "
            f"shipped from {', '.join(_rel(r) for r in e.roots)}"
        )
    for x in a.excluded:
        err.print(f"[bold]Left out[/] {x.name} {x.version}: {x.reason}")
    code = [f for f in a.local_files if f.endswith(".py")]
    data = len(a.local_files) - len(code)
    if a.local_files:
        more = f" (+ {data} package data files)" if data else ""
        err.print("[bold]Local files[/]: " + ", ".join(_rel(f) for f in code) + more)
    for f in a.findings:
        colour = {"error": "red", "warning": "yellow"}.get(f.severity, "cyan")
        where = f" ({_rel(f.location.path)}:{f.location.line})" if f.location else ""
        err.print(f"[{colour}]{f.severity}[/] [{f.code}] {f.message}{where}", soft_wrap=True)


def _why(name: str, a: Analysis, targets: tuple[str, ...], fmt: str, output: str | None) -> None:
    """`--why NAME`: the chains from the target to NAME, or one line saying why there are none."""
    from lfm_pack.analyze import closure

    chains = closure.why(name, a)
    if not chains:
        std = [
            r.site.module
            for r in a.imports
            if r.kind in ("stdlib", "builtin")
            and (r.site.module == name or r.site.module.startswith(name + "."))
        ]
        if std:
            raise TargetError(
                f"{name} is in the standard library of Python {a.env.version_str}: it travels "
                "with the interpreter, it is not a closure member",
                hint="ask about a third-party distribution or import name",
            )
        members = ", ".join(p.name for p in a.packages) or "none"
        raise TargetError(
            f"{name} is not in the closure of {', '.join(targets)} (members: {members})",
            hint="give a distribution or import name from the closure; run without --why to see it",
        )
    member = closure.why_target(name, a) or name
    pkg = next((p for p in a.packages if p.name == member), None)
    if fmt == "json":
        emit_json(
            {
                "name": name,
                "member": member,
                "optional": pkg.optional if pkg is not None else False,
                "editable": any(e.name == member for e in a.editables),
                "chains": chains,
            },
            output,
        )
    else:
        emit("\n".join(" -> ".join(chain) for chain in chains), output)


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
@click.option(
    "--why",
    "why_name",
    metavar="NAME",
    help="Explain why NAME (distribution or import name) is in the closure.",
)
@click.option(
    "--source-root",
    "source_roots",
    multiple=True,
    metavar="DIR",
    help="Also import local modules from DIR (a sys.path entry your code adds itself).",
)
@click.option("-o", "--output", metavar="FILE", help="Write the product to FILE (atomically).")
def command(
    targets: tuple[str, ...],
    python: str | None,
    prefix: str | None,
    as_json: bool,
    fmt: str | None,
    why_name: str | None,
    source_roots: tuple[str, ...],
    output: str | None,
) -> None:
    """Find exactly what TARGET... reaches and the pinned distributions it needs.

    Never imports or runs the analysed code; the target environment is probed in a
    subprocess. Several targets give the union, each import keeping its evidence.
    """
    # Imported here so `--help` and the other subcommands start without libcst.
    from lfm_pack.analyze import formats
    from lfm_pack.analyze.pipeline import run_analysis
    from lfm_pack.lock import analysis_to_json

    fmt = "json" if as_json else (fmt or "table")
    with err.status("analyzing…", spinner="dots"):
        analysis = run_analysis(targets, python=python, prefix=prefix, source_roots=source_roots)
    if why_name:
        _why(why_name, analysis, targets, fmt, output)
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
