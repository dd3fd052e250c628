"""The `lfm-pack` command: a thin click group.

Each subcommand lives in `lfm_pack/commands/<name>.py` (parse options -> call the stage ->
render). This module only wires them together and turns `LfmError` into one red line plus a
hint and the documented exit code (docs/exit-codes.md); a traceback is shown only with --debug.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.markup import escape

from lfm_pack._version import __version__
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


#: Subcommand name -> module; imported only when that subcommand runs, so `lfm-pack analyze`
#: does not pay for libcst-free stages (and vice versa) and `--help` stays fast.
COMMANDS = {
    "analyze": "lfm_pack.commands.analyze",
    "pack": "lfm_pack.commands.pack",
    "monitor": "lfm_pack.commands.monitor",
    "show": "lfm_pack.commands.show",
    "suggest": "lfm_pack.commands.suggest",
    "submit": "lfm_pack.commands.submit",
}


class LfmGroup(click.Group):
    """Click group with lazily imported subcommands that renders LfmError as one line + hint."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        import importlib

        command: click.Command = importlib.import_module(module).command
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LfmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
            if exc.hint:
                err.print(f"[dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)
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
