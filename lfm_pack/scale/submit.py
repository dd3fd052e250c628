"""Batch job scripts for Slurm, PBS, LSF and HTCondor that run a packed function per input.

Every script has the same payload: pick this task's line of the input list (the array index),
run the launcher with the archive from a shared path (or transferred beside it), a node-local
cache, the per-task report and output files, and the resource limits that match the request.
Only the header and the name of the array-index variable differ between schedulers. The
scheduler's wall-time limit is the launcher's plus a grace period, so the monitor ends a late
task itself and still writes its report before the scheduler would kill it blind.

Rendering is pure (spec in, text out); `lfm_pack.commands.submit` does the file I/O.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Literal

from lfm_pack.scale.sizes import hms, to_mib

Scheduler = Literal["slurm", "pbs", "lsf", "htcondor"]
SCHEDULERS: tuple[Scheduler, ...] = ("slurm", "pbs", "lsf", "htcondor")
#: seconds the scheduler waits beyond the launcher's own wall-time limit
WALL_GRACE_S = 60
#: node-local cache unless $LFM_CACHE_DIR says otherwise (HTCondor points TMPDIR at the job's
#: scratch directory, which dies with the job, so it uses /tmp directly)
DEFAULT_CACHE = "${LFM_CACHE_DIR:-${TMPDIR:-/tmp}/lfm-cache-${USER:-$(id -un)}}"
HTCONDOR_CACHE = "${LFM_CACHE_DIR:-/tmp/lfm-cache-${USER:-$(id -un)}}"


@dataclass(frozen=True)
class JobSpec:
    """Everything a job script needs; paths are absolute (they are read on compute nodes)."""

    scheduler: Scheduler
    name: str  # the pack's name: <name>-run, reports <name>-<task>.json
    launcher: str
    workdir: str
    report_dir: str
    output_dir: str
    log_dir: str
    archive: str | None = None  # passed as --archive (a shared path); None = beside launcher
    inputs: str | None = None  # one JSON line per task, given to the launcher as --input
    tasks: int = 1
    memory_bytes: int | None = None
    cores: int | None = None
    wall_time_s: int | None = None
    disk_bytes: int | None = None
    extra_args: tuple[str, ...] = ()  # after `--` on the launcher's command line
    transfer: bool = False  # HTCondor: ship launcher, archive and inputs with the job
    header: tuple[str, ...] = ()  # extra scheduler options, verbatim (e.g. "--partition=short")


@dataclass(frozen=True)
class RenderedFile:
    """One file to write: name relative to the chosen output location, text, mode."""

    suffix: str  # ".sh" or ".sub"
    text: str
    executable: bool


def _q(value: str) -> str:
    return shlex.quote(value)


def scheduler_wall(spec: JobSpec) -> int | None:
    return None if spec.wall_time_s is None else spec.wall_time_s + WALL_GRACE_S


def payload(spec: JobSpec, task_expr: str) -> str:
    """The POSIX sh body shared by every scheduler; `task_expr` yields the 0-based index."""
    transfer = spec.scheduler == "htcondor" and spec.transfer
    launcher = "./" + spec.launcher.rsplit("/", 1)[-1] if transfer else spec.launcher
    inputs = spec.inputs
    if transfer and inputs:
        inputs = inputs.rsplit("/", 1)[-1]
    report_dir = "reports" if transfer else spec.report_dir
    output_dir = "outputs" if transfer else spec.output_dir
    cache = HTCONDOR_CACHE if spec.scheduler == "htcondor" else DEFAULT_CACHE
    lines = [
        f"TASK_ID={task_expr}",
        f"LFM_NAME={_q(spec.name)}",
        f"LFM_LAUNCHER={_q(launcher)}",
        f"LFM_REPORTS={_q(report_dir)}",
        f"LFM_OUTPUTS={_q(output_dir)}",
        f'LFM_CACHE="{cache}"',
        'mkdir -p "$LFM_REPORTS" "$LFM_OUTPUTS" || exit 1',
        'set -- --cache-dir "$LFM_CACHE" --report "$LFM_REPORTS/$LFM_NAME-$TASK_ID.json" '
        '--output "$LFM_OUTPUTS/$LFM_NAME-$TASK_ID.json"',
    ]
    if spec.archive and not transfer:
        lines.append(f'set -- "$@" --archive {_q(spec.archive)}')
    if spec.memory_bytes is not None:
        lines.append(f'set -- "$@" --memory {to_mib(spec.memory_bytes)}M')
    if spec.wall_time_s is not None:
        lines.append(f'set -- "$@" --wall-time {spec.wall_time_s}')
    if inputs:
        lines += [
            f"LFM_INPUTS={_q(inputs)}",
            'line=$(sed -n "$((TASK_ID + 1))p" "$LFM_INPUTS")',
            'if [ -z "$line" ]; then',
            '    echo "lfm-pack job: no input line $((TASK_ID + 1)) in $LFM_INPUTS" >&2',
            "    exit 2",
            "fi",
            'input_file=$(mktemp "${TMPDIR:-/tmp}/lfm-input-$LFM_NAME-$TASK_ID.XXXXXX") || exit 1',
            "trap 'rm -f \"$input_file\"' EXIT",
            'printf \'%s\\n\' "$line" >"$input_file"',
            'set -- "$@" --input "$input_file"',
        ]
    extra = ""
    if spec.extra_args:
        extra = " -- " + " ".join(_q(a) for a in spec.extra_args)
    lines.append(f'"$LFM_LAUNCHER" "$@"{extra}')
    lines.append("exit $?")
    return "\n".join(lines) + "\n"


def _preamble(comment: str) -> list[str]:
    return ["#!/bin/bash", f"# {comment} — written by lfm-pack submit; edit freely."]


def render_slurm(spec: JobSpec) -> str:
    h = _preamble("Slurm array job")
    h.append(f"#SBATCH --job-name={spec.name}")
    h.append(f"#SBATCH --chdir={spec.workdir}")
    if spec.inputs:
        h.append(f"#SBATCH --array=0-{spec.tasks - 1}")
        h.append(f"#SBATCH --output={spec.log_dir}/{spec.name}-%A_%a.out")
    else:
        h.append(f"#SBATCH --output={spec.log_dir}/{spec.name}-%j.out")
    h.append("#SBATCH --nodes=1")
    h.append("#SBATCH --ntasks=1")
    if spec.cores is not None:
        h.append(f"#SBATCH --cpus-per-task={spec.cores}")
    if spec.memory_bytes is not None:
        h.append(f"#SBATCH --mem={to_mib(spec.memory_bytes)}M")
    wall = scheduler_wall(spec)
    if wall is not None:
        h.append(f"#SBATCH --time={hms(wall)}")
    if spec.disk_bytes is not None:
        h.append(f"#SBATCH --tmp={to_mib(spec.disk_bytes)}M")
    h += [f"#SBATCH {opt}" for opt in spec.header]
    return "\n".join(h) + "\n\n" + payload(spec, '"${SLURM_ARRAY_TASK_ID:-0}"')


def _pbs_walltime(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def render_pbs(spec: JobSpec) -> str:
    h = _preamble("PBS Pro / OpenPBS array job")
    h.append(f"#PBS -N {spec.name[:15]}")
    if spec.inputs and spec.tasks > 1:
        h.append(f"#PBS -J 0-{spec.tasks - 1}")
    select = "select=1"
    if spec.cores is not None:
        select += f":ncpus={spec.cores}"
    if spec.memory_bytes is not None:
        select += f":mem={to_mib(spec.memory_bytes)}mb"
    h.append(f"#PBS -l {select}")
    wall = scheduler_wall(spec)
    if wall is not None:
        h.append(f"#PBS -l walltime={_pbs_walltime(wall)}")
    h.append("#PBS -j oe")
    h.append(f"#PBS -o {spec.log_dir}/")
    h += [f"#PBS {opt}" for opt in spec.header]
    body = f"cd {_q(spec.workdir)} || exit 1\n"
    return "\n".join(h) + "\n\n" + body + payload(spec, '"${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-0}}"')


def render_lsf(spec: JobSpec) -> str:
    h = _preamble("LSF job array")
    if spec.inputs:
        h.append(f'#BSUB -J "{spec.name}[1-{spec.tasks}]"')
        h.append(f"#BSUB -o {spec.log_dir}/{spec.name}-%J_%I.out")
    else:
        h.append(f'#BSUB -J "{spec.name}"')
        h.append(f"#BSUB -o {spec.log_dir}/{spec.name}-%J.out")
    h.append(f"#BSUB -cwd {spec.workdir}")
    if spec.cores is not None:
        h.append(f"#BSUB -n {spec.cores}")
    if spec.memory_bytes is not None:
        mib = to_mib(spec.memory_bytes)
        h.append(f'#BSUB -R "rusage[mem={mib}MB] span[hosts=1]"')
        h.append(f"#BSUB -M {mib}MB")
    elif spec.cores is not None:
        h.append('#BSUB -R "span[hosts=1]"')
    wall = scheduler_wall(spec)
    if wall is not None:
        minutes = math.ceil(wall / 60)
        h.append(f"#BSUB -W {minutes // 60}:{minutes % 60:02d}")
    h += [f"#BSUB {opt}" for opt in spec.header]
    # LSF array indices start at 1; the input list and report names start at 0
    return "\n".join(h) + "\n\n" + payload(spec, "$(( ${LSB_JOBINDEX:-1} - 1 ))")


def render_htcondor(spec: JobSpec, executable: str) -> tuple[str, str]:
    """(submit description, executable wrapper); the wrapper gets $(Process) as $1."""
    wrapper = "\n".join(_preamble("HTCondor job wrapper (argument 1: the task index)")) + "\n\n"
    wrapper += payload(spec, '"${1:-0}"')
    lines = [
        "# HTCondor submit description — written by lfm-pack submit; edit freely.",
        "universe = vanilla",
        f"executable = {executable}",
        "arguments = $(Process)",
        f"initialdir = {spec.workdir}",
        f"output = {spec.log_dir}/{spec.name}-$(Cluster)_$(Process).out",
        f"error = {spec.log_dir}/{spec.name}-$(Cluster)_$(Process).err",
        f"log = {spec.log_dir}/{spec.name}-$(Cluster).log",
    ]
    if spec.cores is not None:
        lines.append(f"request_cpus = {spec.cores}")
    if spec.memory_bytes is not None:
        lines.append(f"request_memory = {to_mib(spec.memory_bytes)}MB")
    if spec.disk_bytes is not None:
        lines.append(f"request_disk = {to_mib(spec.disk_bytes)}MB")
    wall = scheduler_wall(spec)
    if wall is not None:
        # HTCondor has no wall-time request: remove jobs that run past the limit
        lines.append(
            f"periodic_remove = (JobStatus == 2) && (time() - EnteredCurrentStatus > {wall})"
        )
    if spec.transfer:
        files = [spec.launcher]
        if spec.archive:
            files.append(spec.archive)
        if spec.inputs:
            files.append(spec.inputs)
        lines += [
            "should_transfer_files = YES",
            "when_to_transfer_output = ON_EXIT",
            "transfer_input_files = " + ", ".join(files),
            "transfer_output_files = reports, outputs",
        ]
    else:
        lines.append("should_transfer_files = IF_NEEDED")
    lines += [f"{opt}" for opt in spec.header]
    lines.append(f"queue {spec.tasks}")
    return "\n".join(lines) + "\n", wrapper


def render(spec: JobSpec, executable: str = "") -> tuple[RenderedFile, ...]:
    """The files of the job: one script, or (HTCondor) a submit description and its wrapper."""
    if spec.scheduler == "slurm":
        return (RenderedFile(".sh", render_slurm(spec), True),)
    if spec.scheduler == "pbs":
        return (RenderedFile(".sh", render_pbs(spec), True),)
    if spec.scheduler == "lsf":
        return (RenderedFile(".sh", render_lsf(spec), True),)
    sub, wrapper = render_htcondor(spec, executable)
    return (RenderedFile(".sub", sub, False), RenderedFile(".sh", wrapper, True))


def submit_command(scheduler: Scheduler, script: str, wait: bool = False) -> list[str]:
    """The command that submits `script` (LSF reads the script on stdin: see the caller)."""
    if scheduler == "slurm":
        return ["sbatch", "--parsable", *(["--wait"] if wait else []), script]
    if scheduler == "pbs":
        return ["qsub", script]
    if scheduler == "lsf":
        return ["bsub"]
    return ["condor_submit", script]
