"""`lfm-pack monitor`: run any command under the lfm resource monitor on this host.

It is the very monitor that travels inside every pack (lfm_runtime), run by this Python, so a
measurement taken on the submit host is comparable with the report from a compute node.
"""

from __future__ import annotations

import os
import sys

import click

from lfm_pack.errors import ExitCode, LfmError
from lfm_pack.launch.runtime.lfm_runtime.__main__ import BOOT
from lfm_pack.launch.runtime.lfm_runtime.sizes import parse_size
from lfm_pack.paths import RUNTIME_HOLDER

RUNTIME_DIR = str(RUNTIME_HOLDER)

EPILOG = """\b
Examples:
  lfm-pack monitor -- python train.py --epochs 3
  lfm-pack monitor --memory 2G --wall-time 600 --report r.json -- ./simulate.sh
  lfm-pack monitor --json -- python -c "x = b'a' * 10**8" | jq .resources.memory_peak_bytes
  lfm-pack show r.json

Exit codes: the command's own, 82 limit exceeded, 87 report not writable, 128+N ended by
signal N (killed from outside, or crashed: the report's status says which). A limit, a crash
or a kill prints one line on stderr, the same line the launcher prints (docs/launcher.md).
"""


class _UsageError(LfmError):
    exit_code = ExitCode.USAGE


def _check_size(value: str | None, flag: str) -> None:
    if value is None:
        return
    try:
        parse_size(value)
    except ValueError as exc:
        raise _UsageError(f"{flag}: {exc}") from None


@click.command(
    "monitor",
    epilog=EPILOG,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--memory", metavar="SIZE", help="Memory limit of the whole process tree (e.g. 2G).")
@click.option("--wall-time", type=float, metavar="SECONDS", help="Wall-time limit.")
@click.option("--disk", metavar="SIZE", help="Limit on bytes added to the working directory.")
@click.option(
    "--cores", type=click.IntRange(min=1), help="Cores (CPU affinity; cgroup v2 when delegated)."
)
@click.option(
    "--interval", type=float, default=0.05, show_default=True, help="Sampling interval in seconds."
)
@click.option(
    "--kill-grace", type=float, default=5.0, show_default=True, help="SIGTERM to SIGKILL grace (s)."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(),
    help="Write the JSON report here (a directory: a unique report inside it).",
)
@click.option(
    "--rmonitor",
    type=click.Path(dir_okay=False),
    help="Also write a cctools resource_monitor summary.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report on stdout (the command's stdout goes to stderr).",
)
@click.argument("cmd", nargs=-1, required=True)
def command(
    memory: str | None,
    wall_time: float | None,
    disk: str | None,
    cores: int | None,
    interval: float,
    kill_grace: float,
    report_path: str | None,
    rmonitor: str | None,
    as_json: bool,
    cmd: tuple[str, ...],
) -> None:
    """Run CMD under the resource monitor: whole-tree memory, cores, I/O, limits, JSON report."""
    _check_size(memory, "--memory")
    _check_size(disk, "--disk")
    args = [sys.executable, "-I", "-S", "-c", BOOT, RUNTIME_DIR, "monitor"]
    for flag, value in (
        ("--memory", memory),
        ("--wall-time", wall_time),
        ("--disk", disk),
        ("--cores", cores),
        ("--interval", interval),
        ("--kill-grace", kill_grace),
        ("--report", report_path),
        ("--rmonitor", rmonitor),
    ):
        if value is not None:
            args += [flag, str(value)]
    if as_json:
        args += ["--print-report", "--stdout-to-stderr"]
    args += ["--", *cmd]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)  # signals reach the monitor directly; its exit code is ours
