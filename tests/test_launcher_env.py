"""The node's environment reaches the task (regression: it was wiped in function mode).

Schedulers talk to tasks through environment variables (SLURM_*, OMP_NUM_THREADS,
CUDA_VISIBLE_DEVICES, TMPDIR, HOME): a launcher that drops them breaks real workloads silently.
Only the variables that would leak the node's Python into the env may be removed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lfm_pack.launch.devpack import DevPack, build_dev_pack

JOB = """
import os
import subprocess
import sys

def env_of(*names):
    return {n: os.environ.get(n) for n in names}

def child_python_with_same_flags():
    # What loky, multiprocessing's resource tracker and many libraries do.
    flags = subprocess._args_from_interpreter_flags()
    proc = subprocess.run([sys.executable, *flags, "-c", "import job, sys; print(sys.flags.isolated)"])
    return {"flags": flags, "rc": proc.returncode}
"""
SCRIPT = """
import json, os, sys
print(json.dumps({n: os.environ.get(n) for n in sys.argv[1:]}))
"""


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    targets = [
        {
            "raw": f"job.py:{q}",
            "kind": "file",
            "module": "job",
            "app_path": ".lfm/app/0/job.py",
            "qualname": q,
        }
        for q in ("env_of", "child_python_with_same_flags")
    ] + [
        {
            "raw": "script.py",
            "kind": "file",
            "module": "script",
            "app_path": ".lfm/app/0/script.py",
            "qualname": None,
        },
    ]
    return build_dev_pack(
        tmp_path_factory.mktemp("pack"),
        name="envjob",
        python=sys.executable,
        app_files={"job.py": JOB, "script.py": SCRIPT},
        targets=targets,
    )


NAMES = [
    "SLURM_ARRAY_TASK_ID",
    "OMP_NUM_THREADS",
    "HOME",
    "LFM_TEST_MARK",
    "PYTHONPATH",
    "PYTHONHOME",
]


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SLURM_ARRAY_TASK_ID="7",
        OMP_NUM_THREADS="3",
        LFM_TEST_MARK="kept",
        PYTHONPATH="/node/site",
        PYTHONHOME="/node/home",
    )
    return env


@pytest.mark.parametrize("target", ["job.py:env_of", "script.py"])
def test_node_environment_reaches_the_task_but_node_python_settings_do_not(
    pack: DevPack, tmp_path: Path, target: str
) -> None:
    proc = subprocess.run(
        [str(pack.launcher), "--cache-dir", str(tmp_path / "c"), "--target", target, "--", *NAMES],
        env=_node_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["SLURM_ARRAY_TASK_ID"] == "7"
    assert seen["OMP_NUM_THREADS"] == "3"
    assert seen["LFM_TEST_MARK"] == "kept"
    assert seen["HOME"] == os.environ.get("HOME")
    assert seen["PYTHONHOME"] is None  # the node's Python must not leak into the env
    assert "/node/site" not in (seen["PYTHONPATH"] or "")


def test_python_children_started_with_the_same_flags_still_see_the_env(
    pack: DevPack, tmp_path: Path
) -> None:
    """The task must not run under -I/-S: children inheriting them would lose PYTHONPATH."""
    proc = subprocess.run(
        [
            str(pack.launcher),
            "--cache-dir",
            str(tmp_path / "c"),
            "--target",
            "job.py:child_python_with_same_flags",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "-I" not in seen["flags"] and "-S" not in seen["flags"]
    assert seen["rc"] == 0
