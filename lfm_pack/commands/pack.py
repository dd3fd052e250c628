"""`lfm-pack pack`: a minimal, relocatable, reproducible tarball + launcher for one function."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from lfm_pack.commands.common import emit_json, env_options, json_option
from lfm_pack.console import err
from lfm_pack.launch.runtime.lfm_runtime.sizes import format_size
from lfm_pack.pack.archive import DEFAULT_LEVEL
from lfm_pack.pack.build import PackRequest, PackResult, build_pack
from lfm_pack.pack.select import STRIP_CHOICES, Options

EPILOG = """\b
Examples:
  lfm-pack pack job.py:simulate -o dist/            # dist/simulate.tar.gz, simulate-run, .lock.json
  dist/simulate-run -- 42 '{"steps": 10}'           # on any node: unpack once, call, print JSON
  lfm-pack analyze job.py:simulate --json > job.lock.json
  lfm-pack pack --lock job.lock.json -o dist/       # pack later / elsewhere from a saved analysis
  lfm-pack pack job.py:simulate -o dist/ --compression zstd --level 9 --strip tests,docs
  lfm-pack pack --prefix ~/miniforge3/envs/sci job.py:run -o dist/ --cache-dir ~/.cache/lfm-packs
\b
Compression: gzip (default: every node can `tar xzf`; written multi-threaded as independent
gzip members), zstd (faster and smaller; needs `zstd` on the node), none.
--extra-file PATH must lie inside a local root (the target's directory, --source-root DIR);
it keeps its path relative to that root under .lfm/app/<i>/ (so `Path(__file__).parent /
"data.csv"` works). Editable installs (pip install -e) are your own code: the functions you
reach are followed into them and ship as source; --include NAME ships one whole.
--include NAME / --exclude PKG change the closure; the lock beside the pack lists what it ships
(`packages`, each with `required_by`) and what it leaves out (`excluded`, with the reason).
Verification (default) extracts the pack elsewhere with the build prefixes hidden (private mount
namespace, as root) and imports everything; --no-verify skips it.
"""


def _split_strip(values: tuple[str, ...]) -> frozenset[str]:
    out: set[str] = set()
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in STRIP_CHOICES:
                raise click.BadParameter(
                    f"{part!r} is not one of {', '.join(STRIP_CHOICES)}", param_hint="--strip"
                )
            out.add(part)
    return frozenset(out)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """A step reporter: a byte progress bar for sized steps, a status line otherwise.

    Only on a terminal: rich's live display ends with a newline when stderr is a file or a
    pipe (a CI log), which would put a blank line before an error's one line.
    """
    if quiet or not err.is_terminal:
        yield lambda desc, total: lambda n: None
        return
    prog = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with prog:
        last: list[TaskID] = []

        def step(desc: str, total: int | None) -> Callable[[int], None]:
            for t in last:
                prog.update(t, completed=prog.tasks[t].total or 0, visible=False)
            task = prog.add_task(desc, total=total)
            last.append(task)
            return lambda n: prog.advance(task, n)

        yield step


def render_summary(r: PackResult) -> None:
    err.print(f"[bold green]packed[/] {r.archive}" + (" [dim](from cache)[/]" if r.cached else ""))
    ratio = f"{r.bytes_in / r.bytes_out:.2f}x" if r.bytes_out else "-"
    # like with like: files and bytes as installed, then what compression made of them
    vs = f"{100 * r.bytes_in / r.env_bytes:.1f}%" if r.env_bytes else "-"
    err.print(
        f"  {r.files} files, {format_size(r.bytes_in)} ({vs} of the environment's "
        f"{format_size(r.env_bytes)} / {r.env_files} files), compressed to {format_size(r.bytes_out)} "
        f"(ratio {ratio}) in {r.seconds:.1f} s"
    )
    err.print(f"  launcher {r.launcher}   lock {r.lock}")
    err.print(
        f"  env key {r.env_key[:16]}…  glibc >= {r.glibc_required or '?'}  "
        f"distributions: {', '.join(r.distributions) or 'none'}"
    )
    if r.verify:
        err.print(
            f"  verified ({r.verify.mode}): {r.verify.imported} imports, {r.verify.scanned} files "
            f"scanned, {r.verify.seconds:.1f} s (archive written in {r.write_seconds:.1f} s)"
        )
    elif not r.cached:
        err.print("  [yellow]not verified[/] (--no-verify)")
    for n in r.notes:
        err.print(f"  [cyan]note[/] {n}", soft_wrap=True)
    never = [n for n, why in r.excluded if "never reached" in why]
    left = [
        f"{n} ({why})"
        for n, why in r.excluded
        if not n.startswith("stdlib:") and "never reached" not in why
    ]
    if never:
        err.print(
            f"  not shipped (imported but never reached; a stand-in raises if used): "
            f"{', '.join(never)}",
            soft_wrap=True,
        )
    if left:
        err.print(f"  left out: {', '.join(left)}", soft_wrap=True)


@click.command("pack", epilog=EPILOG)
@click.argument("targets", nargs=-1)
@click.option("--lock", "lock_file", metavar="FILE", help="Pack from a saved `analyze --json`.")
@click.option("-o", "--output", "outdir", metavar="OUTDIR", required=True, help="Output directory.")
@env_options
@click.option("--name", metavar="NAME", help="Base name of the outputs (default: the function).")
@click.option(
    "--compression",
    type=click.Choice(["gzip", "zstd", "none"]),
    default="gzip",
    show_default=True,
    help="Archive compression.",
)
@click.option(
    "--level",
    type=int,
    help=f"Compression level (default gzip {DEFAULT_LEVEL['gzip']}, zstd {DEFAULT_LEVEL['zstd']}).",
)
@click.option("--threads", type=int, help="Compression/hashing threads (default: all cores).")
@click.option(
    "--include",
    multiple=True,
    metavar="NAME",
    help="Also ship NAME with its closure: a distribution, an import name (sklearn) or a "
    "local module (followed whole).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="PKG",
    help="Leave this distribution out (and what only it needed).",
)
@click.option(
    "--source-root",
    "source_roots",
    multiple=True,
    metavar="DIR",
    help="Also import local modules from DIR (a sys.path entry your code adds itself).",
)
@click.option(
    "--extra-file",
    "extra_files",
    multiple=True,
    metavar="PATH",
    help="Ship this file/dir (inside a local root) for the function to read.",
)
@click.option(
    "--strip",
    "strip",
    multiple=True,
    metavar="WHAT",
    help=f"Drop {', '.join(STRIP_CHOICES)} (comma-separated or repeated).",
)
@click.option(
    "--compile",
    "compile_",
    is_flag=True,
    help="Ship unchecked-hash .pyc for every module (faster cold start).",
)
@click.option(
    "--editable-as-source",
    is_flag=True,
    hidden=True,
    help="Deprecated: editable installs always ship as source now.",
)
@click.option(
    "--allow-unrelocatable",
    is_flag=True,
    help="conda: pack packages whose prefix cannot be relocated (not in pkgs cache).",
)
@click.option(
    "--skip-optional",
    is_flag=True,
    help="Leave out closure members reached only through guarded (optional) imports.",
)
@click.option(
    "--allow-missing",
    is_flag=True,
    help="Pack even if reached imports are installed nowhere (that code path must not run).",
)
@click.option("--no-verify", is_flag=True, help="Skip the hidden-prefix verification.")
@click.option("--cache-dir", metavar="DIR", help="Reuse/store packs by env key here.")
@json_option
def command(
    targets: tuple[str, ...],
    lock_file: str | None,
    outdir: str,
    python: str | None,
    prefix: str | None,
    name: str | None,
    compression: str,
    level: int | None,
    threads: int | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    source_roots: tuple[str, ...],
    extra_files: tuple[str, ...],
    strip: tuple[str, ...],
    compile_: bool,
    editable_as_source: bool,
    allow_unrelocatable: bool,
    skip_optional: bool,
    allow_missing: bool,
    no_verify: bool,
    cache_dir: str | None,
    as_json: bool,
) -> None:
    """Pack exactly what TARGET... needs into OUTDIR: archive, launcher, lock.

    The archive holds the interpreter, the pinned closure's installed files and your local
    code; it is reproducible (same env + closure -> same bytes) and verified to run from
    another path with the build environment hidden before it is written to OUTDIR.
    """
    if bool(targets) == bool(lock_file):
        raise click.UsageError("give TARGET... or --lock FILE (exactly one of them)")
    if lock_file and (python or prefix):
        raise click.UsageError("--python/--prefix come from the lock with --lock")
    if lock_file and source_roots:
        raise click.UsageError("--source-root is part of the analysis: give it to analyze")
    if name is not None:
        from lfm_pack.pack.naming import checked_name

        checked_name(name)  # before the analysis: a bad name costs nothing
    from lfm_pack.pack.outdir import precheck

    precheck(outdir)  # likewise an -o that is a file or read-only
    if level is not None and compression != "none":
        lo, hi = (1, 9) if compression == "gzip" else (-7, 22)
        if not lo <= level <= hi:
            raise click.BadParameter(
                f"{compression} level must be {lo}..{hi}", param_hint="--level"
            )
    if editable_as_source:
        err.print(
            "[yellow]note[/] --editable-as-source is no longer needed: editable installs "
            "always ship as source (their reached modules; --include NAME ships one whole)"
        )
    opts = Options(
        include=include,
        exclude=exclude,
        strip=_split_strip(strip),
        extra_files=extra_files,
        editable_as_source=editable_as_source,
        allow_unrelocatable=allow_unrelocatable,
        compile=compile_,
        skip_optional=skip_optional,
    )
    t0 = time.monotonic()
    if lock_file:
        from lfm_pack.lock import read_lock

        analysis = read_lock(lock_file)
    else:
        from lfm_pack.analyze.pipeline import run_analysis

        with err.status("analyzing…", spinner="dots"):
            analysis = run_analysis(
                targets, python=python, prefix=prefix, source_roots=source_roots
            )
    req = PackRequest(
        analysis=analysis,
        outdir=outdir,
        name=name,
        compression=compression,  # type: ignore[arg-type]
        level=level,
        options=opts,
        verify=not no_verify,
        cache_dir=cache_dir,
        threads=threads,
        allow_missing=allow_missing,
    )
    with _progress(as_json) as step:
        result = build_pack(req, step)
    if as_json:
        data = result.to_json()
        data["seconds_total"] = round(time.monotonic() - t0, 3)
        emit_json(data)
    else:
        render_summary(result)
