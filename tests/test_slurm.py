"""`lfm-pack submit --scheduler slurm` against a real single-node Slurm (tests/slurm.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import slurm
from slurm import SlurmCluster, write_standin_launcher

pytestmark = pytest.mark.slurm
slurm_cluster = slurm.slurm_cluster  # the session fixture (starts the cluster once)


def lfm(cluster: SlurmCluster, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", *args],
        cwd=cwd,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A pack dir (stand-in launcher + archive), a shared dir, and 4 inputs."""
    dist = tmp_path / "dist"
    write_standin_launcher(dist, "simulate", sys.executable)
    (dist / "simulate.tar.zst").write_bytes(b"stand-in archive")
    lines = [json.dumps({"args": [i], "kwargs": {"scale": 10}}) for i in range(4)]
    (tmp_path / "inputs.jsonl").write_text("\n".join(lines) + "\n")
    tmp_path.chmod(0o755)
    return tmp_path


def test_array_job_runs_each_input_with_staged_archive_and_reports(
    slurm_cluster: SlurmCluster, project: Path
) -> None:
    shared = project / "shared"
    proc = lfm(
        slurm_cluster,
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        f"--stage-from={shared}",
        "--memory=300M",
        "--cores=1",
        "--time=2m",
        "--wait",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr + slurm_cluster.log_tail()
    result = json.loads(proc.stdout)
    assert result["submitted"] and result["tasks"] == 4 and result["job_id"]
    # staged: the nodes read launcher and archive from the shared dir
    assert (shared / "simulate-run").is_file() and (shared / "simulate.tar.zst").is_file()
    for i in range(4):
        out = json.loads((project / "outputs" / f"simulate-{i}.json").read_text())
        assert out["value"] == i * 10
        report = json.loads((project / "reports" / f"simulate-{i}.json").read_text())
        argv = report["standin"]["argv"]
        assert report["standin"]["env"]["SLURM_ARRAY_TASK_ID"] == str(i)
        assert argv["archive"] == str(shared / "simulate.tar.zst")
        assert argv["memory"] == "300M" and argv["wall_time"] == "120"
        assert argv["cache_dir"].startswith("/tmp/lfm-cache-")
        assert report["standin"]["env"]["SLURM_MEM_PER_NODE"] == "300"
    logs = sorted(p.name for p in (project / "logs").iterdir())
    assert len(logs) == 4 and all(n.startswith("simulate-") for n in logs)


def test_suggest_sizes_the_next_submission(slurm_cluster: SlurmCluster, project: Path) -> None:
    first = lfm(
        slurm_cluster,
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--wait",
    )
    assert first.returncode == 0, first.stderr
    flags = lfm(slurm_cluster, project, "suggest", "reports", "--format", "slurm")
    assert flags.returncode == 0, flags.stderr
    mem_flag = next(f for f in flags.stdout.split() if f.startswith("--mem="))
    suggested_mib = mem_flag.removeprefix("--mem=").removesuffix("M")
    # the second run is sized from the first run's reports
    second = lfm(
        slurm_cluster,
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--suggest=reports",
        "--report-dir=reports2",
        "--wait",
    )
    assert second.returncode == 0, second.stderr
    for i in range(4):
        report = json.loads((project / "reports2" / f"simulate-{i}.json").read_text())
        assert report["standin"]["env"]["SLURM_MEM_PER_NODE"] == suggested_mib
        assert report["standin"]["argv"]["memory"] == f"{suggested_mib}M"


def test_impossible_request_is_refused_in_one_line(
    slurm_cluster: SlurmCluster, project: Path
) -> None:
    proc = lfm(
        slurm_cluster,
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--memory=64T",
    )
    assert proc.returncode == 4, proc.stderr
    assert "sbatch" in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / "reports").exists()
