"""`lfm-pack submit --scheduler slurm` against a real single-node Slurm (tests/slurm.py), running
a real pack built by `lfm-pack pack` (tests/slurm.py::job_pack): each array task runs the real
launcher, which unpacks the archive once per node cache, runs the function under the monitor and
writes a real report; `lfm-pack suggest` then sizes the next submission from those reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import slurm
from slurm import JobPack, SlurmCluster

pytestmark = pytest.mark.slurm
slurm_cluster = slurm.slurm_cluster  # the session fixture (starts the cluster once)
job_pack = slurm.job_pack  # the session fixture (packs job.py:simulate once)
MIB = 2**20


def lfm(
    cluster: SlurmCluster, cwd: Path, *args: str, cache: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = cluster.env
    if cache is not None:
        env["LFM_CACHE_DIR"] = str(cache)  # sbatch exports it to the tasks
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture()
def project(tmp_path: Path, job_pack: JobPack) -> Path:
    """A copy of the real pack in dist/, and 4 inputs."""
    job_pack.copy_to(tmp_path / "dist")
    lines = [json.dumps({"args": [i], "kwargs": {"scale": 10}}) for i in range(4)]
    (tmp_path / "inputs.jsonl").write_text("\n".join(lines) + "\n")
    tmp_path.chmod(0o755)
    return tmp_path


def task_results(
    project: Path, job_pack: JobPack, reports: str, cache: Path
) -> list[tuple[Any, Any]]:
    """(output, report) of tasks 0..3, each checked to be a real successful run of the pack."""
    results = []
    for i in range(4):
        out = json.loads((project / "outputs" / f"simulate-{i}.json").read_text())
        assert out["value"] == i * 10
        report = json.loads((project / reports / f"simulate-{i}.json").read_text())
        assert report["schema"] == "lfm-pack.report/1"
        assert report["status"] == "ok" and report["exit_code"] == 0, report.get("error")
        assert report["env_key"] == job_pack.env_key
        assert report["target"]["raw"] == "job.py:simulate"
        assert report["cache"]["dir"] == str(cache)
        assert report["resources"]["memory_peak_bytes"] > 0
        results.append((out, report))
    return results


def slurm_memory_mib(cluster: SlurmCluster, job_id: str) -> dict[int, int]:
    """Array task index -> the memory Slurm allocated it (MiB), from Slurm's own job record."""
    proc = cluster.run("scontrol", "-o", "show", "job", job_id)
    assert proc.returncode == 0, proc.stderr
    found: dict[int, int] = {}
    for line in proc.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "ArrayTaskId" in fields:
            mem = fields["MinMemoryNode"]
            assert mem.endswith("M"), mem
            found[int(fields["ArrayTaskId"])] = int(mem[:-1])
    return found


def test_array_job_runs_the_real_pack_once_per_node_cache(
    slurm_cluster: SlurmCluster, project: Path, job_pack: JobPack
) -> None:
    shared = project / "shared"
    cache = project / "node-cache"
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
        cache=cache,
    )
    assert proc.returncode == 0, proc.stderr + slurm_cluster.log_tail()
    result = json.loads(proc.stdout)
    assert result["submitted"] and result["tasks"] == 4 and result["job_id"]
    # staged: the nodes read launcher and archive from the shared dir
    assert (shared / "simulate-run").is_file()
    assert (shared / job_pack.archive.name).read_bytes() == job_pack.archive.read_bytes()
    script = Path(result["files"][0]).read_text()
    assert f"--archive {shared / job_pack.archive.name}" in script
    results = task_results(project, job_pack, "reports", cache)
    # the limits the launcher enforced are the ones Slurm allocated
    assert slurm_memory_mib(slurm_cluster, result["job_id"]) == {i: 300 for i in range(4)}
    for _, report in results:
        assert report["limits"]["memory_bytes"] == 300 * MIB
        assert report["limits"]["wall_time_s"] == 120
    # one node cache: the archive was unpacked by exactly one task, the others hit it
    assert sorted(r["cache"]["hit"] for _, r in results) == [False, True, True, True]
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [job_pack.env_key]
    logs = sorted(p.name for p in (project / "logs").iterdir())
    assert len(logs) == 4 and all(n.startswith("simulate-") for n in logs)


def test_suggest_on_real_reports_sizes_the_next_submission(
    slurm_cluster: SlurmCluster, project: Path, job_pack: JobPack
) -> None:
    cache = project / "node-cache"
    first = lfm(
        slurm_cluster,
        project,
        "submit",
        "--scheduler=slurm",
        "--launcher=dist/simulate-run",
        "--inputs=inputs.jsonl",
        "--wait",
        cache=cache,
    )
    assert first.returncode == 0, first.stderr + slurm_cluster.log_tail()
    first_results = task_results(project, job_pack, "reports", cache)
    assert sorted(r["cache"]["hit"] for _, r in first_results) == [False, True, True, True]
    sized = lfm(slurm_cluster, project, "suggest", "reports", "--json")
    assert sized.returncode == 0, sized.stderr
    (category,) = json.loads(sized.stdout)["categories"]
    assert category["tasks_seen"] == 4
    peak = max(r["resources"]["memory_peak_bytes"] for _, r in first_results)
    assert category["memory_bytes"] >= peak
    flags = lfm(slurm_cluster, project, "suggest", "reports", "--format", "slurm")
    assert flags.returncode == 0, flags.stderr
    mem_flag = next(f for f in flags.stdout.split() if f.startswith("--mem="))
    suggested_mib = mem_flag.removeprefix("--mem=").removesuffix("M")
    assert int(suggested_mib) * MIB == category["memory_bytes"]
    # the second run is sized from the first run's reports; its env is already in the cache
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
        "--json",
        cache=cache,
    )
    assert second.returncode == 0, second.stderr + slurm_cluster.log_tail()
    job_id = json.loads(second.stdout)["job_id"]
    assert slurm_memory_mib(slurm_cluster, job_id) == {i: int(suggested_mib) for i in range(4)}
    for _, report in task_results(project, job_pack, "reports2", cache):
        assert report["limits"]["memory_bytes"] == category["memory_bytes"]
        assert report["limits"]["wall_time_s"] == category["wall_time_s"]
        assert report["cache"]["hit"] is True


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
