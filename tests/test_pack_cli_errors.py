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


# ---- -o PATH that cannot hold a pack (issue: exit 6, the cause named, nothing left) --------


@pytest.fixture()
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "job.py").write_text(JOB)
    return root


def test_output_that_is_a_file(proj: Path) -> None:
    (proj / "out").write_text("mine\n")
    proc = pack(proj, "job.py:f", "-o", "out")
    one_line(proc, 6, r"-o out: EEXIST: exists and is not a directory")
    assert (proj / "out").read_text() == "mine\n"


def test_output_under_proc(proj: Path) -> None:
    proc = pack(proj, "job.py:f", "-o", "/proc/lfm-pack-out/x")
    one_line(proc, 6, r"-o /proc/lfm-pack-out/x: .*(ENOENT|EACCES|EPERM)")
    assert not os.path.exists("/proc/lfm-pack-out")


def test_output_under_a_file(proj: Path) -> None:
    (proj / "afile").write_text("x")
    proc = pack(proj, "job.py:f", "-o", "afile/out")
    one_line(proc, 6, r"-o afile/out: ENOTDIR")


def _listing_after(proj: Path, mount_opts: str, *args: str) -> tuple[str, str, int]:
    """(stderr of the pack, `ls -A` of the filesystem afterwards, exit code), one namespace."""
    from lfm_pack.pack.verify import namespace_argv

    prefix = namespace_argv()
    if prefix is None:
        pytest.skip("needs a private mount namespace (root, or unprivileged user namespaces)")
    (proj / "fs").mkdir(exist_ok=True)
    script = (
        f"mount -t tmpfs -o {mount_opts} lfm-small fs && "
        '"$@" 2>pack.err; rc=$?; echo "rc=$rc"; ls -A fs'
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [*prefix, "sh", "-c", script, "sh", sys.executable, "-m", "lfm_pack", "pack", *args],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    first, _, rest = proc.stdout.partition("\n")
    return (proj / "pack.err").read_text(), rest.strip(), int(first.removeprefix("rc="))


def test_output_on_a_full_filesystem(proj: Path) -> None:
    err, left, rc = _listing_after(
        proj, "size=2m,mode=0777", "job.py:f", "-o", "fs/out", "--no-verify"
    )
    assert rc == 6, err
    assert "Traceback" not in err and "ENOSPC: no space left on the device" in err, err
    assert "nothing was left under the output's final names" in err
    assert left == "", left  # no out/, no staging dir, no temp file


def test_output_on_a_read_only_filesystem(proj: Path) -> None:
    err, left, rc = _listing_after(
        proj, "size=2m,mode=0777,ro", "job.py:f", "-o", "fs/out", "--no-verify"
    )
    assert rc == 6, err
    assert "EROFS" in err and "Traceback" not in err, err
    assert left == ""
