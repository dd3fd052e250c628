"""`lfm-pack pack` refusals: one line, the documented code, nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

JOB = "def f(x):\n    return x\n"


def pack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", "pack", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str], code: int, pattern: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.rstrip("\n").split("\n")
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), proc.stderr
    assert re.search(pattern, lines[0]), (pattern, lines[0])


@pytest.mark.parametrize(
    ("name", "suggested"),
    [("fïb ü", "f-b"), ("../../evil", "evil"), ("-x", "x"), ("a/b", "a-b")],
)
def test_a_name_that_would_be_rewritten_is_refused(
    tmp_path: Path, name: str, suggested: str
) -> None:
    (tmp_path / "job.py").write_text(JOB)
    proc = pack(tmp_path, "job.py:f", "-o", "out", "--name", name)
    one_line(proc, 2, r"a pack name may hold only letters, digits")
    assert f"hint: e.g. --name {suggested}" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_name_with_no_usable_character(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(JOB)
    proc = pack(tmp_path, "job.py:f", "-o", "out", "--name", "ïü")
    one_line(proc, 2, r"a pack name may hold only")
    assert "use letters, digits" in proc.stderr
