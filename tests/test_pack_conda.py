"""`lfm-pack pack` of conda prefixes: conda-pack relocation, closure-only files, refusals.

Each test builds its own prefix under tmp_path (conda-unpack rewrites files in place, and
conda-pack's no-archive output hardlinks the package cache: a shared cached prefix must never
be near either), then runs the moved pack with the prefix and the build interpreter hidden.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import CondaPkgSpec, conda_base_python, conda_prefix, standard_conda_packages
from hiding import host_dirs

from lfm_pack.pack.verify import namespace_available, run_hidden

pytestmark = pytest.mark.skipif(
    not namespace_available(),
    reason="needs a private mount namespace (root, or unprivileged user namespaces)",
)

TEXT_PKG = CondaPkgSpec(
    "tinytool",
    "0.1",
    "py_0",
    depends=("python",),
    files={"tinytool/__init__.py": "PREFIX = '@PREFIX@'\n"},
    prefix_files={
        "bin/tinytool": "#!@PREFIX@/bin/python3.11\nimport tinytool\nprint(tinytool.PREFIX)\n"
    },
)
UNUSED_PKG = CondaPkgSpec("bigdep", "9.0", "py_0", files={"bigdep/__init__.py": "HUGE = 1\n"})
BIN_PKG = CondaPkgSpec(
    "binpkg",
    "1.0",
    "h0_0",
    files={"binpkg/__init__.py": "VALUE = 7\n"},
    prefix_files={
        "lib/libbinpkg.so": b"\x7fELF\x02\x01\x01\x00 compiled-in path: @PREFIX@/share\x00"
    },
)

JOB = """\
import bigdep
import tinytool


def where():
    return {"prefix": tinytool.PREFIX}
"""


def _pack(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*lfm_pack_cmd(), "pack", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _hide(*paths: Path) -> list[str]:
    return host_dirs(*paths)


def _project(tmp_path: Path, text: str) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "job.py").write_text(text)
    return proj


def test_conda_pack_relocates_with_conda_unpack_and_ships_only_the_closure(tmp_path: Path) -> None:
    prefix = conda_prefix(tmp_path, [TEXT_PKG, UNUSED_PKG])
    proj = _project(tmp_path, JOB)
    out = tmp_path / "out"
    res = _pack(
        proj,
        "--prefix",
        str(prefix),
        "job.py:where",
        "-o",
        str(out),
        "--json",
        "--compression",
        "zstd",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["verify"]["mode"] == "hidden-prefix"
    assert (
        "tinytool==0.1" in summary["distributions"]
        and f"python=={conda_base_python()[1]}" in summary["distributions"]  # type: ignore[index]
    )
    assert not [d for d in summary["distributions"] if d.startswith("bigdep")]
    names = subprocess.run(
        ["tar", "--zstd", "-tf", str(out / "where.tar.zst")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    manifest = json.loads(
        subprocess.run(
            ["tar", "--zstd", "-xOf", str(out / "where.tar.zst"), ".lfm/manifest.json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert manifest["needs_conda_unpack"] is True and manifest["kind"] == "conda"
    assert "bin/conda-unpack" in names and "conda-meta/history" in names
    assert "lib/python3.11/site-packages/tinytool/__init__.py" in names
    assert not [n for n in names if "bigdep" in n or n.startswith("pkgs/")]

    moved = tmp_path / "elsewhere" / "run dir"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    cache = tmp_path / "node"
    run = run_hidden([str(moved / "where-run"), "--cache-dir", str(cache)], _hide(prefix, proj))
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)["prefix"]
    assert got.startswith(str(cache) + "/") and str(prefix) not in got  # relocated
    (env_dir,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    script = run_hidden([str(env_dir / "bin" / "tinytool")], _hide(prefix, proj))
    assert script.returncode == 0, script.stderr
    assert script.stdout.strip() == str(env_dir)


def test_uncached_package_with_binary_prefix_is_refused(tmp_path: Path) -> None:
    prefix = conda_prefix(tmp_path, [BIN_PKG])
    shutil.rmtree(prefix / "pkgs" / "binpkg-1.0-h0_0")  # `conda clean -p` with the env kept
    proj = _project(tmp_path, "import binpkg\n\n\ndef f():\n    return binpkg.VALUE\n")
    out = tmp_path / "out"
    res = _pack(proj, "--prefix", str(prefix), "job.py:f", "-o", str(out), "--no-verify")
    assert res.returncode == 8, res.stderr
    assert "binpkg" in res.stderr and "lib/libbinpkg.so" in res.stderr
    assert "--allow-unrelocatable" in res.stderr
    assert not out.exists() or os.listdir(out) == []
    ok = _pack(
        proj, "--prefix", str(prefix), "job.py:f", "-o", str(out), "--allow-unrelocatable", "--json"
    )
    assert ok.returncode == 0, ok.stderr
    assert any("binpkg" in n and "unrelocated" in n for n in json.loads(ok.stdout)["notes"])


def test_cached_package_with_binary_prefix_is_not_refused(tmp_path: Path) -> None:
    prefix = conda_prefix(tmp_path, [BIN_PKG])
    proj = _project(tmp_path, "import binpkg\n\n\ndef f():\n    return binpkg.VALUE\n")
    res = _pack(
        proj, "--prefix", str(prefix), "job.py:f", "-o", str(tmp_path / "out"), "--no-verify"
    )
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_numpy_from_a_conda_prefix(tmp_path: Path) -> None:
    specs = [s for s in standard_conda_packages() if s.name != "tinytool"] + [TEXT_PKG]
    prefix = conda_prefix(tmp_path, specs, python_depends=("libffi >=3.4,<4.0a0",))
    proj = _project(
        tmp_path,
        "import torch\nimport numpy as np\nimport tinytool\n\n\n"
        "def simulate(n):\n    return [float(np.ones((n, n)).dot(np.ones(n)).sum()), tinytool.PREFIX]\n",
    )
    out = tmp_path / "out"
    res = _pack(
        proj,
        "--prefix",
        str(prefix),
        "job.py:simulate",
        "-o",
        str(out),
        "--json",
        "--compression",
        "zstd",
    )
    assert res.returncode == 0, res.stderr
    dists = json.loads(res.stdout)["distributions"]
    assert "numpy==1.26.4" in dists and "libopenblas==0.3.23" in dists
    assert not [d for d in dists if d.startswith("pytorch")]  # imported at top, never used
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    run = run_hidden(
        [str(moved / "simulate-run"), "--cache-dir", str(tmp_path / "c"), "--", "3"],
        _hide(prefix, proj),
    )
    assert run.returncode == 0, run.stderr
    total, where = json.loads(run.stdout)
    assert total == 9.0 and where.startswith(str(tmp_path / "c"))
