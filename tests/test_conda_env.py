"""The real conda prefix fixture: it runs, its records are conda-shaped, lfm-pack indexes it,
and conda-pack packs and relocates it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import conda_pack
import pytest
from envbuild import PLACEHOLDER, conda_base_python, env_info, standard_conda_prefix

from lfm_pack.analyze.closure import compute_closure, why
from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.formats import to_conda_env
from lfm_pack.analyze.mapping import map_sites
from lfm_pack.models import Analysis, ImportSite, Location, TargetSpec

SP = "lib/python3.11/site-packages"


@pytest.fixture(scope="module")
def prefix() -> Path:
    return standard_conda_prefix()


def test_interpreter_is_the_prefix_own(prefix: Path) -> None:
    code = (
        "import sys, numpy, torch, tinytool, colorful, ctypes\n"
        "maps = open('/proc/self/maps').read()\n"
        "print(sys.prefix, numpy.__version__, tinytool.PREFIX,"
        " str(sys.prefix) + '/lib/libpython3.11.so.1.0' in maps)"
    )
    out = subprocess.run(
        [str(prefix / "bin" / "python"), "-B", "-I", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.split()
    assert out == [str(prefix), "1.26.4", str(prefix), "True"]


def test_records_are_conda_shaped(prefix: Path) -> None:
    records = sorted((prefix / "conda-meta").glob("*.json"))
    assert [r.name for r in records] == [
        "libffi-3.4.4-h7f98852_0.json",
        "libgfortran-ng-13.2.0-h69a702a_0.json",
        "libopenblas-0.3.23-pthreads_h80387f5_0.json",
        "numpy-1.26.4-py311h64a7726_0.json",
        f"python-{conda_base_python()[1]}-h_lfm_0_cpython.json",  # type: ignore[index]
        "python_abi-3.11-4_cp311.json",
        "pytorch-2.3.0-cpu_py311_0.json",
        "six-1.16.0-pyh6c4a22f_0.json",
        "tinytool-0.1-py_0.json",
    ]
    assert (prefix / "conda-meta" / "history").read_text().count("\n+conda-forge::") == 9
    for path in records:
        rec = json.loads(path.read_text())
        assert {
            "name",
            "version",
            "build",
            "build_number",
            "channel",
            "depends",
            "files",
            "paths_data",
            "link",
        } <= rec.keys()
        assert rec["files"] == [p["_path"] for p in rec["paths_data"]["paths"]]
        assert Path(rec["link"]["source"], "info", "paths.json").is_file()
        for entry in rec["paths_data"]["paths"]:
            installed = prefix / entry["_path"]
            assert os.path.lexists(installed), entry["_path"]
            if entry["path_type"] == "hardlink":
                assert hashlib.sha256(installed.read_bytes()).hexdigest() == entry["sha256"]
    tiny = json.loads((prefix / "conda-meta" / "tinytool-0.1-py_0.json").read_text())
    relocatable = {p["_path"]: p for p in tiny["paths_data"]["paths"] if "prefix_placeholder" in p}
    assert sorted(relocatable) == ["bin/tinytool", f"{SP}/tinytool/__init__.py"]
    assert {p["file_mode"] for p in relocatable.values()} == {"text"}
    cached = Path(tiny["link"]["source"], SP, "tinytool", "__init__.py").read_text()
    assert cached == f"PREFIX = '{PLACEHOLDER}'\nimport six\n"
    # the prefix's own text files hold the real prefix
    assert (
        prefix / SP / "tinytool" / "__init__.py"
    ).read_text() == f"PREFIX = '{prefix}'\nimport six\n"


def _analysis(prefix: Path, modules: list[str]) -> Analysis:
    env = env_info(prefix)
    index = load_index(env)
    sites = [ImportSite(m, Location("/w/job.py", i + 1)) for i, m in enumerate(modules)]
    resolved, findings = map_sites(sites, env, index)
    pkgs, more = compute_closure(resolved, env, index)
    return Analysis(
        (TargetSpec("job.py:f", "file", "/w/job.py", None, "f"),),
        env,
        resolved,
        (),
        (),
        (),
        (*index.findings, *findings, *more),
        pkgs,
    )


def test_index_mapping_and_closure_on_conda(prefix: Path) -> None:
    a = _analysis(prefix, ["numpy", "torch", "colorful", "tinytool"])
    assert a.env.kind == "conda"
    assert [(r.kind, r.distribution) for r in a.imports] == [
        ("third-party", "numpy"),
        ("third-party", "pytorch"),  # conda's name for pip's torch
        ("third-party", "colorful"),
        ("third-party", "tinytool"),
    ]
    assert a.findings == ()  # conda's own dist-infos are not owner conflicts
    pk = {p.name: p for p in a.packages}
    assert {n: (p.source, p.direct) for n, p in pk.items()} == {
        "colorful": ("pip", True),
        "libffi": ("conda", False),
        "libgfortran-ng": ("conda", False),
        "libopenblas": ("conda", False),
        "numpy": ("conda", True),
        "python": ("conda", False),
        "python_abi": ("conda", False),
        "pytorch": ("conda", True),
        "six": ("conda", False),
        "tinytool": ("conda", True),
    }
    assert pk["numpy"].requirement == "conda-forge::numpy=1.26.4=py311h64a7726_0"
    assert pk["libffi"].required_by == ("python",)
    assert pk["six"].required_by == ("colorful", "tinytool")  # pip edge into a conda record
    assert pk["libgfortran-ng"].required_by == ("numpy", "libopenblas")
    # the whole distribution travels: vendored native libs and the dist-info (for
    # importlib.metadata.version("numpy") at run time) are among its files
    numpy_files = load_index(a.env).get("numpy").files  # type: ignore[union-attr]
    sp = f"{prefix}/{SP}"
    assert any(f.startswith(f"{sp}/numpy.libs/libopenblas") for f in numpy_files)
    assert f"{sp}/numpy-1.26.4.dist-info/METADATA" in numpy_files
    assert f"{sp}/numpy/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so" in numpy_files
    assert why("libffi", a) == [
        ["/w/job.py:1 (import numpy)", "numpy", "python", "libffi"],
        ["/w/job.py:2 (import torch)", "pytorch", "python", "libffi"],
        ["/w/job.py:4 (import tinytool)", "tinytool", "python", "libffi"],
        ["/w/job.py:2 (import torch)", "pytorch", "numpy", "python", "libffi"],
        ["/w/job.py:3 (import colorful)", "colorful", "six", "python", "libffi"],
        ["/w/job.py:4 (import tinytool)", "tinytool", "six", "python", "libffi"],
    ]
    env_yml = to_conda_env(a)
    assert "\nchannels:\n  - conda-forge\ndependencies:\n" in env_yml
    assert "  - conda-forge::numpy=1.26.4=py311h64a7726_0\n" in env_yml
    assert "  - pip:\n    - colorful==0.5.6\n" in env_yml


def test_conda_pack_packs_and_relocates_it(prefix: Path, tmp_path: Path) -> None:
    env = conda_pack.CondaEnv.from_prefix(str(prefix))
    by_target = {f.target: f for f in env.files}
    assert by_target[f"{SP}/numpy/__init__.py"].is_conda is True
    assert by_target[f"{SP}/tinytool/__init__.py"].prefix_placeholder == PLACEHOLDER
    assert by_target[f"{SP}/colorful/__init__.py"].is_conda is False  # pip on top
    packed = tmp_path / "packed"
    env.pack(output=str(packed), format="no-archive")
    # no-archive hard-links files from the package cache and conda-unpack rewrites in place:
    # copy first, or the shared fixture's package cache would be relocated too.
    out = tmp_path / "elsewhere"
    shutil.copytree(packed, out, symlinks=True)
    shutil.rmtree(packed)
    assert (
        out / SP / "tinytool" / "__init__.py"
    ).read_text() == f"PREFIX = '{PLACEHOLDER}'\nimport six\n"
    subprocess.run(
        [str(out / "bin" / "python"), "-B", str(out / "bin" / "conda-unpack")], check=True
    )
    assert (out / SP / "tinytool" / "__init__.py").read_text() == f"PREFIX = '{out}'\nimport six\n"
    got = subprocess.run(
        [
            str(out / "bin" / "python"),
            "-B",
            "-I",
            "-c",
            "import sys, numpy, tinytool; print(sys.prefix, tinytool.PREFIX, numpy.ones(3).sum())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout.split()
    assert got == [str(out), str(out), "3.0"]
    tiny = json.loads((prefix / "conda-meta" / "tinytool-0.1-py_0.json").read_text())
    cached = Path(tiny["link"]["source"], SP, "tinytool", "__init__.py").read_text()
    assert cached == f"PREFIX = '{PLACEHOLDER}'\nimport six\n"  # the fixture is untouched


def test_cached_builds_are_built_once_under_concurrency(tmp_path: Path) -> None:
    """Two processes (as under pytest-xdist) asking for the same cached venv: one builds, the
    other waits on the lock and gets the same directory; nothing half-built is left."""
    import sys

    code = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from envbuild import real_venv;"
        " p = real_venv([]); print(p, os.stat(p).st_ino)"
    )
    env = {**os.environ, "LFM_TEST_CACHE": str(tmp_path / "cache")}
    tests_dir = str(Path(__file__).parent)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, tests_dir], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    venv = Path(outs[0][0])
    assert sorted(x.name for x in venv.parent.iterdir()) == [
        venv.name,
        f"{venv.name}.complete",
        f"{venv.name}.lock",
    ]
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == str(venv)
