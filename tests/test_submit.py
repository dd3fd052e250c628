"""`lfm-pack submit`: scripts for every scheduler, their payload run for real with bash.

The array index comes from each scheduler's own variable (SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX,
LSB_JOBINDEX counting from 1, HTCondor's $(Process) as the wrapper's argument); the payload must
map it to the right input line, report and output file. The payload runs a real pack built by
`lfm-pack pack` (tests/slurm.py::job_pack): the real launcher unpacks it into the node cache
and writes real reports. Slurm itself is in test_slurm.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import slurm
from slurm import JobPack

from lfm_pack.scale.submit import JobSpec, payload, render


def lfm(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


job_pack = slurm.job_pack  # the session fixture (packs job.py:simulate once)
MIB = 2**20


@pytest.fixture()
def project(tmp_path: Path, job_pack: JobPack) -> Path:
    job_pack.copy_to(tmp_path / "dist")
    lines = [json.dumps({"args": [i], "kwargs": {"scale": 3}}) for i in range(3)]
    (tmp_path / "inputs.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def write_script(project: Path, scheduler: str, *extra: str) -> list[Path]:
    proc = lfm(
        project,
        "submit",
        f"--scheduler={scheduler}",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--memory=1500M",
        "--cores=2",
        "--time=10m",
        "--dry-run",
        "--json",
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    return [Path(p) for p in json.loads(proc.stdout)["files"]]


def run_payload(
    script: Path, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TMPDIR=str(cwd / "node-tmp"), **env)
    (cwd / "node-tmp").mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_task(project: Path, job_pack: JobPack, i: int, cache_dir: Path) -> Any:
    """Task i ran the real pack: its output, and a real report with the requested limits."""
    out = json.loads((project / "outputs" / f"simulate-{i}.json").read_text())
    assert out["value"] == 3 * i
    report = json.loads((project / "reports" / f"simulate-{i}.json").read_text())
    assert report["schema"] == "lfm-pack.report/1"
    assert report["status"] == "ok" and report["exit_code"] == 0, report.get("error")
    assert report["env_key"] == job_pack.env_key
    assert report["limits"]["memory_bytes"] == 1500 * MIB
    assert report["limits"]["wall_time_s"] == 600
    # node-local cache: under $TMPDIR, per user
    assert report["cache"]["dir"] == str(cache_dir)
    assert report["cache"]["path"] == str(cache_dir / job_pack.env_key)
    return report


@pytest.fixture()
def tmp_user() -> Iterator[str]:
    """A user name of its own, so the cache under /tmp (HTCondor's) starts empty; removed after."""
    user = f"lfmtest-{uuid.uuid4().hex[:12]}"
    yield user
    shutil.rmtree(f"/tmp/lfm-cache-{user}", ignore_errors=True)


@pytest.mark.parametrize(
    ("scheduler", "index_env", "first"),
    [
        ("slurm", "SLURM_ARRAY_TASK_ID", 0),
        ("pbs", "PBS_ARRAY_INDEX", 0),
        ("lsf", "LSB_JOBINDEX", 1),
    ],
)
def test_payload_maps_the_array_index_to_input_report_and_output(
    project: Path, job_pack: JobPack, scheduler: str, index_env: str, first: int
) -> None:
    (script,) = write_script(project, scheduler)
    hits = []
    for i in range(3):
        proc = run_payload(script, project, {index_env: str(i + first), "USER": "tester"})
        assert proc.returncode == 0, proc.stderr
        report = check_task(project, job_pack, i, project / "node-tmp" / "lfm-cache-tester")
        hits.append(report["cache"]["hit"])
    # unpacked once into this node's cache, then reused
    assert hits == [False, True, True]
    # past the end of the input list: a clear failure, no report
    proc = run_payload(script, project, {index_env: str(3 + first), "USER": "tester"})
    assert proc.returncode == 2 and "no input line 4" in proc.stderr
    assert not (project / "reports" / "simulate-3.json").exists()
    # the temp input files are removed
    assert not list((project / "node-tmp").glob("lfm-input-*"))


def test_headers_request_what_was_asked(project: Path) -> None:
    (slurm,) = write_script(project, "slurm")
    text = slurm.read_text()
    for line in (
        "#SBATCH --array=0-2",
        "#SBATCH --mem=1500M",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=00:11:00",
    ):
        assert line in text.splitlines()
    (pbs,) = write_script(project, "pbs")
    text = pbs.read_text()
    assert "#PBS -J 0-2" in text and "#PBS -l select=1:ncpus=2:mem=1500mb" in text
    assert "#PBS -l walltime=00:11:00" in text
    (lsf,) = write_script(project, "lsf")
    text = lsf.read_text()
    assert '#BSUB -J "simulate[1-3]"' in text and "#BSUB -n 2" in text and "#BSUB -W 0:11" in text
    assert "rusage[mem=1500MB]" in text
    sub, _wrapper = write_script(project, "htcondor")
    text = sub.read_text()
    for line in (
        "request_memory = 1500MB",
        "request_cpus = 2",
        "queue 3",
        "arguments = $(Process)",
    ):
        assert line in text.splitlines()
    for script in (slurm, pbs, lsf, _wrapper):
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0


def test_htcondor_shared_filesystem_wrapper(
    project: Path, job_pack: JobPack, tmp_user: str
) -> None:
    sub, wrapper = write_script(project, "htcondor")
    assert f"executable = {wrapper}" in sub.read_text()
    hits = []
    for i in range(3):
        proc = run_payload(wrapper, project, {"USER": tmp_user}, str(i))
        assert proc.returncode == 0, proc.stderr
        # HTCondor points TMPDIR at the job's scratch dir: the cache goes to /tmp instead
        report = check_task(project, job_pack, i, Path(f"/tmp/lfm-cache-{tmp_user}"))
        hits.append(report["cache"]["hit"])
    assert hits == [False, True, True]


def test_htcondor_transfer_mode_runs_in_a_scratch_dir(
    project: Path, job_pack: JobPack, tmp_user: str
) -> None:
    sub, wrapper = write_script(project, "htcondor", "--transfer")
    text = sub.read_text()
    transfer = next(line for line in text.splitlines() if line.startswith("transfer_input_files"))
    files = [Path(f.strip()) for f in transfer.split("=", 1)[1].split(",")]
    assert {f.name for f in files} == {"simulate-run", job_pack.archive.name, "inputs.jsonl"}
    assert "transfer_output_files = reports, outputs" in text
    # what HTCondor does: copy the inputs into an empty scratch dir, run there with $(Process)
    scratch = project / "scratch"
    scratch.mkdir()
    for f in files:
        shutil.copy2(f, scratch / f.name)
    shutil.rmtree(project / "dist")  # only the transferred copies exist now
    proc = run_payload(
        wrapper, scratch, {"USER": tmp_user, "_CONDOR_SCRATCH_DIR": str(scratch)}, "1"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads((scratch / "outputs" / "simulate-1.json").read_text())
    assert out["value"] == 3
    report = json.loads((scratch / "reports" / "simulate-1.json").read_text())
    # the launcher found the transferred archive beside itself (no --archive in the wrapper)
    assert "--archive" not in wrapper.read_text()
    assert report["status"] == "ok" and report["env_key"] == job_pack.env_key
    assert report["cache"] == {
        "hit": False,
        "dir": f"/tmp/lfm-cache-{tmp_user}",
        "path": f"/tmp/lfm-cache-{tmp_user}/{job_pack.env_key}",
    }


def test_stage_from_copies_the_pack_to_the_shared_dir(project: Path, job_pack: JobPack) -> None:
    shared = project / "shared"
    archive = job_pack.archive.name
    proc = lfm(
        project,
        "submit",
        "--scheduler=pbs",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        f"--stage-from={shared}",
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stderr
    script = Path(proc.stdout.strip())
    text = script.read_text()
    assert f"--archive {shared}/{archive}" in text and f"LFM_LAUNCHER={shared}/simulate-run" in text
    assert not shared.exists()  # a dry run copies nothing
    # not a dry run: the copies are made (then qsub is missing here: exit 4, one line)
    env = dict(os.environ, PATH=str(Path(sys.executable).parent) + ":/usr/bin:/bin")
    proc = lfm(
        project,
        "submit",
        "--scheduler=pbs",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        f"--stage-from={shared}",
        env=env,
    )
    assert proc.returncode == 4, proc.stderr
    assert "qsub not found" in proc.stderr and "Traceback" not in proc.stderr
    assert (shared / archive).read_bytes() == job_pack.archive.read_bytes()
    assert os.access(shared / "simulate-run", os.X_OK)
    # the node sees only the shared copies
    shutil.rmtree(project / "dist")
    run = run_payload(script, project, {"PBS_ARRAY_INDEX": "2", "USER": "tester"})
    assert run.returncode == 0, run.stderr
    report = json.loads((project / "reports" / "simulate-2.json").read_text())
    assert report["status"] == "ok" and report["env_key"] == job_pack.env_key
    assert json.loads((project / "outputs" / "simulate-2.json").read_text())["value"] == 6


def test_single_task_with_args_after_double_dash(project: Path, job_pack: JobPack) -> None:
    proc = lfm(
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--dry-run",
        "--",
        "7",
    )
    assert proc.returncode == 0, proc.stderr
    script = Path(proc.stdout.strip())
    text = script.read_text()
    assert "--array" not in text and "#SBATCH --mem" not in text
    run = run_payload(script, project, {"USER": "tester"})
    assert run.returncode == 0, run.stderr
    assert json.loads((project / "outputs" / "simulate-0.json").read_text())["value"] == 14
    report = json.loads((project / "reports" / "simulate-0.json").read_text())
    assert report["status"] == "ok" and report["argv"] == ["7"]
    assert report["limits"]["memory_bytes"] is None  # nothing requested, nothing enforced


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no inputs"),
        ('{"args": [1]}\n\n[2]\n', "inputs.jsonl:2: empty line"),
        ('{"args": [1]}\n{oops\n', "inputs.jsonl:2: not JSON"),
        ('{"args": [1]}\n[2]\n', "inputs.jsonl:2: not an"),
        ('{"args": 1}\n', "inputs.jsonl:1: not an"),
        ('{"args": [], "env": {}}\n', "inputs.jsonl:1: not an"),
    ],
)
def test_bad_inputs_fail_in_one_line(project: Path, content: str, message: str) -> None:
    (project / "inputs.jsonl").write_text(content)
    proc = lfm(
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--dry-run",
    )
    assert proc.returncode == 9
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_launcher_and_bad_size(project: Path) -> None:
    proc = lfm(project, "submit", "--scheduler=slurm", "--launcher=dist/nope-run", "--dry-run")
    assert proc.returncode == 9 and "no such launcher" in proc.stderr
    proc = lfm(
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--memory=lots",
        "--dry-run",
    )
    assert proc.returncode == 2 and "not a size" in proc.stderr


def test_suggest_from_reports_sets_requests(project: Path) -> None:
    reports = project / "old-reports"
    reports.mkdir()
    for i, mem in enumerate((100, 120, 900)):
        (reports / f"r{i}.json").write_text(
            json.dumps(
                {
                    "schema": "lfm-pack.report/1",
                    "status": "ok",
                    "target": "job.py:simulate",
                    "resources": {
                        "wall_time_s": 100.0,
                        "memory_peak_bytes": mem * 2**20,
                        "cores_peak": 1.0,
                    },
                }
            )
        )
    proc = lfm(
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        f"--suggest={reports}",
        "--policy=max",
        "--dry-run",
    )
    assert proc.returncode == 0, proc.stderr
    text = Path(proc.stdout.strip()).read_text()
    # max policy: 900M + 83M -> 1000M; wall 100 s x 1.5 -> 3 min, + 60 s grace for the scheduler
    assert "#SBATCH --mem=1000M" in text and "#SBATCH --time=00:04:00" in text
    assert "--wall-time 180" in text and "--memory 1000M" in text


def test_render_is_pure_and_quotes_paths() -> None:
    spec = JobSpec(
        scheduler="slurm",
        name="sim",
        launcher="/shared dir/sim-run",
        workdir="/w",
        report_dir="/w/rep orts",
        output_dir="/w/out",
        log_dir="/w/logs",
        extra_args=("a b", "$HOME"),
    )
    assert render(spec) == render(spec)
    body = payload(spec, "0")
    assert "LFM_LAUNCHER='/shared dir/sim-run'" in body and "-- 'a b' '$HOME'" in body
