"""The `lfm-pack` command: a thin click group.

Each subcommand lives in `lfm_pack/commands/<name>.py` (parse options -> call the stage ->
render). This module only wires them together and turns `LfmError` into one red line plus a
hint and the documented exit code (docs/exit-codes.md); a traceback is shown only with --debug.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from lfm_pack import __version__
from lfm_pack.console import err
from lfm_pack.errors import ExitCode, LfmError

EPILOG = """\b
Examples:
  lfm-pack analyze examples/job.py:simulate          # what does simulate() need?
  lfm-pack analyze job.py:simulate --json > job.lock.json
  lfm-pack pack job.py:simulate -o dist/             # minimal relocatable tarball + launcher
  dist/simulate-run -- 42 '{"steps": 10}'            # run it anywhere (needs sh + tar)
  lfm-pack monitor --memory 2G -- python train.py    # the monitor on the submit host

Exit codes: see docs/exit-codes.md (0 ok, 2 usage, 3 target, 4 environment, 5 metadata,
6 pack, 7 verify, 8 refused, 9 input file).
"""


class LfmGroup(click.Group):
    """Click group that renders LfmError as a one-line error with a hint."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LfmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            err.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
            if exc.hint:
                err.print(f"[dim]hint:[/] {exc.hint}", soft_wrap=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            err.print("[bold red]error:[/] interrupted")
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(ExitCode.OK)


@click.group(cls=LfmGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lfm-pack")
@click.option("--debug", is_flag=True, hidden=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Analyze, pack, launch and monitor one Python function for HPC/HTC clusters."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    """Attach every subcommand module that exists (stages land one at a time)."""
    import importlib

    for name in ("analyze", "pack", "monitor", "show", "suggest", "submit"):
        try:
            mod = importlib.import_module(f"lfm_pack.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lfm_pack.commands.{name}":
                continue
            raise
        main.add_command(mod.command)


_register()
