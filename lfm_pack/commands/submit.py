"""`lfm-pack submit`: a ready batch job (array over inputs) for Slurm, PBS, LSF or HTCondor."""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
from pathlib import Path

import click

from lfm_pack.commands.common import emit_json, json_option
from lfm_pack.console import err
from lfm_pack.errors import ExitCode, InputFileError, LfmError
from lfm_pack.jsonio import atomic_open
from lfm_pack.scale.policies import POLICIES
from lfm_pack.scale.reports import load_reports
from lfm_pack.scale.sizes import parse_duration, parse_size
from lfm_pack.scale.submit import SCHEDULERS, JobSpec, Scheduler, render, submit_command
from lfm_pack.scale.suggest import Suggestion, policies_for, suggest

EPILOG = """\b
Examples:
  lfm-pack submit --scheduler slurm --launcher dist/simulate-run --inputs args.jsonl \\
      --suggest reports/ --dry-run                     # write simulate.slurm.sh, do not submit
  lfm-pack submit --scheduler slurm --launcher dist/simulate-run --inputs args.jsonl \\
      --stage-from /shared/packs --memory 2G --cores 1 --time 30m
  lfm-pack submit --scheduler htcondor --launcher dist/simulate-run --inputs args.jsonl \\
      --suggest reports/ -o jobs/simulate             # jobs/simulate.sub + jobs/simulate.sh
  lfm-pack submit --scheduler pbs --launcher dist/simulate-run -- 42   # one task, args after --
\b
Each line of --inputs is one task's call, as the launcher's --input reads it:
  {"args": [42], "kwargs": {"steps": 10}}
Task i writes reports/<name>-<i>.json and outputs/<name>-<i>.json; the archive is unpacked
once per node into ${TMPDIR:-/tmp}/lfm-cache-$USER (or $LFM_CACHE_DIR).
"""


class SubmitError(LfmError):
    """The scheduler's submit command is missing or refused the job."""

    exit_code = ExitCode.ENVIRONMENT


def _pack_name(launcher: Path) -> str:
    name = launcher.name
    return name[: -len("-run")] if name.endswith("-run") else name


def _find_archive(launcher: Path, name: str) -> Path | None:
    """The pack's archive beside its launcher (<name>*.tar*), when there is exactly one."""
    found = sorted(glob.glob(str(launcher.parent / f"{glob.escape(name)}*.tar*")))
    return Path(found[0]) if len(found) == 1 else None


def _count_inputs(path: Path) -> int:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: cannot read inputs ({exc})") from None
    lines = text.splitlines()
    if not lines:
        raise InputFileError(f"{path}: no inputs", hint="one JSON line per task")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise InputFileError(f"{path}:{i}: empty line (task {i - 1} would have no input)")
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{path}:{i}: not JSON ({exc.msg})") from None
        # the launcher's --input format (lfm_runtime.runner.load_input)
        if (
            not isinstance(data, dict)
            or not set(data) <= {"args", "kwargs"}
            or not isinstance(data.get("args", []), list)
            or not isinstance(data.get("kwargs", {}), dict)
        ):
            raise InputFileError(
                f'{path}:{i}: not an {{"args": [...], "kwargs": {{...}}}} object',
                hint='one call per line, e.g. {"args": [42], "kwargs": {"steps": 10}}',
            )
    return len(lines)


def _pick_suggestion(items: tuple[Suggestion, ...], name: str, category: str | None) -> Suggestion:
    names = sorted({s.name for s in items})
    if category:
        chosen = [s for s in items if s.name == category]
    elif len(names) == 1:
        chosen = list(items)
    else:
        chosen = [s for s in items if s.name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] == name]
    if len({s.name for s in chosen}) != 1:
        raise InputFileError(
            "the reports hold several functions: " + ", ".join(names),
            hint="choose one with --category NAME",
        )
    return chosen[0]


def _stage(src: Path, shared: Path) -> Path:
    """Copy `src` into the shared directory (atomically) unless an identical copy is there."""
    dest = shared / src.name
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        return dest
    with atomic_open(dest, "wb", perm=src.stat().st_mode & 0o777) as fh, src.open("rb") as inp:
        shutil.copyfileobj(inp, fh)
    return dest


@click.command(name="submit", epilog=EPILOG)
@click.option("--scheduler", type=click.Choice(SCHEDULERS), required=True)
@click.option(
    "--launcher",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The pack's <name>-run launcher.",
)
@click.option(
    "--inputs",
    type=click.Path(dir_okay=False, path_type=Path),
    help="One JSON line per task (an array job).",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The pack's archive (default: <name>*.tar* beside the launcher).",
)
@click.option(
    "--stage-from",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="SHARED_DIR",
    help="Shared directory the nodes read launcher and archive from (copied there if missing).",
)
@click.option(
    "--suggest",
    "suggest_from",
    multiple=True,
    metavar="REPORTS",
    help="Size from these reports/dirs (repeatable).",
)
@click.option("--policy", type=click.Choice(POLICIES), default="max-throughput", show_default=True)
@click.option("--category", help="Which function's reports size the job (default: the pack's).")
@click.option("--memory", help="Memory per task (e.g. 2G); overrides --suggest.")
@click.option("--cores", type=click.IntRange(min=1), help="Cores per task; overrides --suggest.")
@click.option("--time", "wall", help="Wall time per task (300, 30m, 2h, HH:MM:SS).")
@click.option("--disk", help="Local disk per task (e.g. 1G).")
@click.option("--report-dir", default="reports", show_default=True, type=click.Path(path_type=Path))
@click.option("--output-dir", default="outputs", show_default=True, type=click.Path(path_type=Path))
@click.option("--log-dir", default="logs", show_default=True, type=click.Path(path_type=Path))
@click.option("--transfer", is_flag=True, help="HTCondor: transfer launcher, archive and inputs.")
@click.option(
    "--header",
    "header",
    multiple=True,
    metavar="OPTION",
    help="Extra scheduler option, verbatim (repeatable).",
)
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), help="Script path.")
@click.option("--dry-run", is_flag=True, help="Write the script, do not submit it.")
@click.option("--wait", is_flag=True, help="Slurm: wait for the job to end (sbatch --wait).")
@click.argument("extra_args", nargs=-1)
@json_option
def command(
    scheduler: Scheduler,
    launcher: Path,
    inputs: Path | None,
    archive: Path | None,
    stage_from: Path | None,
    suggest_from: tuple[str, ...],
    policy: str,
    category: str | None,
    memory: str | None,
    cores: int | None,
    wall: str | None,
    disk: str | None,
    report_dir: Path,
    output_dir: Path,
    log_dir: Path,
    transfer: bool,
    header: tuple[str, ...],
    out: Path | None,
    dry_run: bool,
    wait: bool,
    extra_args: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write (and unless --dry-run submit) a batch job running a packed function per input."""
    if not launcher.is_file():
        raise InputFileError(f"{launcher}: no such launcher", hint="run `lfm-pack pack` first")
    launcher = launcher.resolve()
    name = _pack_name(launcher)
    if archive is not None and not archive.is_file():
        raise InputFileError(f"{archive}: no such archive")
    archive_path = archive.resolve() if archive else None
    tasks = 1
    inputs_path = None
    if inputs is not None:
        inputs_path = inputs.resolve()
        tasks = _count_inputs(inputs_path)

    memory_b = cores_n = wall_s = disk_b = None
    if suggest_from:
        loaded = load_reports(suggest_from, skip_bad=True)
        for _path, reason in loaded.skipped:
            err.print(f"[yellow]warning[/] skipped {reason}", soft_wrap=True)
        s = _pick_suggestion(suggest(loaded.measurements, policies_for(policy)), name, category)
        memory_b, cores_n, wall_s, disk_b = s.memory_bytes, s.cores, s.wall_time_s, s.disk_bytes
        err.print(
            f"sized from {s.tasks_seen} run(s) of {s.name} ({s.policy}); "
            f"tasks exceeding it should be resubmitted with --policy max",
            soft_wrap=True,
        )
    if memory:
        memory_b = parse_size(memory)
    if cores:
        cores_n = cores
    if wall:
        wall_s = max(1, round(parse_duration(wall)))
    if disk:
        disk_b = parse_size(disk)

    job_launcher = launcher
    job_archive = archive_path
    if stage_from is not None:
        shared = stage_from.resolve()
        if job_archive is None:
            job_archive = _find_archive(launcher, name)
            if job_archive is None:
                raise InputFileError(
                    f"no single {name}*.tar* archive beside {launcher}",
                    hint="name it with --archive PATH",
                )
        if dry_run:
            job_launcher, job_archive = shared / launcher.name, shared / job_archive.name
        else:
            shared.mkdir(parents=True, exist_ok=True)
            job_launcher, job_archive = _stage(launcher, shared), _stage(job_archive, shared)
    elif scheduler == "htcondor" and transfer and job_archive is None:
        job_archive = _find_archive(launcher, name)

    cwd = Path.cwd()
    spec = JobSpec(
        scheduler=scheduler,
        name=name,
        launcher=str(job_launcher),
        workdir=str(cwd),
        report_dir=str((cwd / report_dir).resolve()),
        output_dir=str((cwd / output_dir).resolve()),
        log_dir=str((cwd / log_dir).resolve()),
        archive=str(job_archive) if job_archive else None,
        inputs=str(inputs_path) if inputs_path else None,
        tasks=tasks,
        memory_bytes=memory_b,
        cores=cores_n,
        wall_time_s=wall_s,
        disk_bytes=disk_b,
        extra_args=extra_args,
        transfer=transfer,
        header=header,
    )
    stem = out if out is not None else cwd / f"{name}.{scheduler}"
    stem = stem.with_suffix("") if stem.suffix in (".sh", ".sub") else stem
    wrapper = Path(f"{stem}.sh").resolve()
    written: list[str] = []
    for f in render(spec, executable=str(wrapper)):
        path = Path(f"{stem}{f.suffix}").resolve()
        with atomic_open(path, "w", perm=0o755 if f.executable else 0o644) as fh:
            fh.write(f.text)
        written.append(str(path))
    script = written[0]
    Path(spec.log_dir).mkdir(parents=True, exist_ok=True)
    err.print(f"wrote {', '.join(written)} ({tasks} task(s))")

    result: dict[str, object] = {
        "scheduler": scheduler,
        "script": script,
        "files": written,
        "tasks": tasks,
        "submitted": False,
        "job_id": None,
        "report_dir": spec.report_dir,
        "output_dir": spec.output_dir,
    }
    if not dry_run:
        cmd = submit_command(scheduler, script, wait=wait)
        if shutil.which(cmd[0]) is None:
            raise SubmitError(
                f"{cmd[0]} not found: is this a {scheduler} submit host?",
                hint=f"the script is ready: {script} (use --dry-run to only write it)",
            )
        stdin = Path(script).read_text() if scheduler == "lsf" else None
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
        if proc.returncode != 0 and not (wait and proc.stdout.strip()):
            raise SubmitError(
                f"{' '.join(cmd)} failed (exit {proc.returncode}): "
                + (proc.stderr.strip().splitlines() or ["no message"])[-1]
            )
        job_id = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else None
        result.update(submitted=True, job_id=job_id, exit_code=proc.returncode, command=cmd)
        err.print(f"submitted {job_id or ''} with {cmd[0]}")
        if wait and proc.returncode != 0:
            err.print(f"[yellow]warning[/] the job ended with exit code {proc.returncode}")
    if as_json:
        emit_json(result)
    else:
        click.echo(script if not result["submitted"] else str(result["job_id"]))
    if wait and result.get("exit_code"):
        raise SystemExit(int(str(result["exit_code"])))
