"""Editable installs (`pip install -e`) are the user's own code, for every backend's hook style.

Each style is a real `pip install -e` by real pip with the real backend from the package index
(tests/envbuild.py `editable_venv`): setuptools src layout (.pth directory), flat layout (PEP 660
finder hook), strict mode (link tree), legacy `setup.py develop` (egg-link), hatchling (.pth)
and hatchling `dev-mode-exact` (`editables` redirector), flit, PDM (.pth and `editables`), uv.
The package `mypkg` imports `greetlib` without declaring it, declares `declared-only` without
installing it, reads package data and its own version from its metadata. Packs are moved and
run with the venv, the project and the job directory hidden.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import EDITABLE_STYLES, FakeDist, editable_venv, env_info, fake_env

from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.pipeline import analyze_in
from lfm_pack.pack.interpreter import site_dir_arc
from lfm_pack.pack.verify import namespace_available, run_hidden

SITE = site_dir_arc(probe(python=sys.executable))
JOB = "import mypkg\n\n\ndef main(x):\n    return mypkg.fit(x)\n"
EXPECTED = {"x": 105, "greet": "hello", "version": "0.1"}

#: The hook each backend writes (EditableSource.style).
STYLE_OF = {
    "setuptools-src": "pth",
    "setuptools-flat": "setuptools-finder",
    "setuptools-strict": "setuptools-strict",
    "setuptools-develop": "develop",
    "hatchling": "pth",
    "hatchling-exact": "editables",
    "flit": "pth",
    "pdm": "pth",
    "pdm-editables": "editables",
    "uv": "pth",
}
#: Round trips in the default suite (one per hook mechanism); the others run with -m slow.
FAST_ROUNDTRIP = {"setuptools-src", "setuptools-flat", "hatchling-exact"}

needs_namespace = pytest.mark.skipif(
    not namespace_available(),
    reason="needs a private mount namespace (root, or unprivileged user namespaces)",
)


def _job(tmp_path: Path, text: str = JOB) -> Path:
    d = tmp_path / "job"
    d.mkdir(exist_ok=True)
    (d / "job.py").write_text(text)
    return d


def _pack(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _hide(*extra: Path) -> list[str]:
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
    dirs |= {os.path.realpath(p) for p in extra}
    return sorted(d for d in dirs if d not in ("/", "/usr"))


def _moved(out: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "moved" / "elsewhere"
    shutil.copytree(out, dest)
    shutil.rmtree(out)
    return dest


@pytest.mark.parametrize("style", sorted(EDITABLE_STYLES))
def test_editable_package_is_followed_as_local_code(style: str, tmp_path: Path) -> None:
    venv, project = editable_venv(style)
    job = _job(tmp_path)
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(job))
    (e,) = a.editables
    assert (e.name, e.style, e.mode) == ("mypkg", STYLE_OF[style], "functions")
    names = {p.name for p in a.packages}
    assert "greetlib" in names  # imported, not declared
    assert "yamlish" not in names  # only unreached functions and modules import it
    assert "declared-only" not in names  # declared, never imported
    codes = {f.code for f in a.findings}
    assert "duplicate-distribution" not in codes  # src/mypkg.egg-info is the same install
    assert "requirement-missing" not in codes and "missing-import" not in codes
    assert "editable-source" in codes
    rel = {os.path.relpath(f, r) for f in a.local_files for r in e.roots if f.startswith(r)}
    assert {"mypkg/__init__.py", "mypkg/core.py", "mypkg/data/table.json"} <= rel
    assert "mypkg/extra.py" not in rel
    # the via chain runs from the target through the editable package's own functions
    (site,) = [r.site for r in a.imports if r.site.module == "greetlib"]
    assert site.via == ("job.py:main", "mypkg/core.py:fit")
    assert os.path.realpath(site.location.path).startswith(os.path.realpath(project))


@needs_namespace
@pytest.mark.parametrize(
    "style",
    [
        s if s in FAST_ROUNDTRIP else pytest.param(s, marks=pytest.mark.slow)
        for s in sorted(EDITABLE_STYLES)
    ],
)
def test_editable_package_packs_moves_and_runs(style: str, tmp_path: Path) -> None:
    venv, project = editable_venv(style)
    job = _job(tmp_path)
    out = tmp_path / "out"
    summary = json.loads(
        _pack(job, "--prefix", str(venv), "job.py:main", "-o", str(out), "--json").stdout
    )
    assert summary["verify"]["mode"] == "hidden-prefix"
    assert any("mypkg 0.1: editable install shipped as source" in n for n in summary["notes"])
    with tarfile.open(out / "main.tar.gz") as tar:
        names = tar.getnames()
    app = [n for n in names if n.startswith(".lfm/app/") and "/mypkg/" in n]
    assert any(n.endswith("/mypkg/core.py") for n in app), app
    assert any(n.endswith("/mypkg/data/table.json") for n in app), app
    assert not any(n.endswith("/mypkg/extra.py") for n in app)
    meta = [n for n in names if "mypkg" in n and n.startswith(SITE)]
    assert any(n.endswith(("dist-info/METADATA", "egg-info/PKG-INFO")) for n in meta), meta
    hooks = [n for n in names if n.endswith(".pth") or "__editable__" in n or "_editable_impl" in n]
    assert not hooks, hooks  # the .pth / finder hooks point at the home tree: never shipped
    lock = json.loads((out / "main.lock.json").read_text())
    assert [e["name"] for e in lock["editables"]] == ["mypkg"]
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "main-run"), "--cache-dir", str(tmp_path / "nc"), "--", "5"],
        _hide(venv, project, job),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == EXPECTED


def test_module_target_inside_a_finder_hook_editable(tmp_path: Path) -> None:
    """A PEP 660 finder puts nothing on sys.path; `mypkg.core:fit` is found all the same."""
    venv, _ = editable_venv("setuptools-flat")
    a = analyze_in(["mypkg.core:fit"], env_info(venv), cwd=str(tmp_path))
    assert a.targets[0].module == "mypkg.core"
    assert "greetlib" in {p.name for p in a.packages}


@needs_namespace
def test_include_an_editable_ships_it_whole(tmp_path: Path) -> None:
    venv, project = editable_venv("setuptools-src")
    job = _job(
        tmp_path,
        "import importlib\n\n\ndef main(name):\n    return importlib.import_module(name).VALUE\n",
    )
    out = tmp_path / "out"
    _pack(job, "--prefix", str(venv), "job.py:main", "-o", str(out), "--include", "mypkg")
    lock = json.loads((out / "main.lock.json").read_text())
    (e,) = lock["editables"]
    assert (e["mode"], e["reason"]) == ("whole", "--include")
    assert "yamlish" in {p["name"] for p in lock["packages"]}  # extra.py's import is mapped
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "main-run"), "--cache-dir", str(tmp_path / "nc"), "--", "mypkg.extra"],
        _hide(venv, project, job),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "yamlish"


def test_an_installed_package_requiring_an_editable_one_gets_it_whole(tmp_path: Path) -> None:
    src = tmp_path / "mylib-src"
    (src / "mylib").mkdir(parents=True)
    (src / "mylib" / "__init__.py").write_text("def core():\n    return 1\n")
    (src / "mylib" / "plugins.py").write_text("import greetlib\n")
    venv = fake_env(
        tmp_path,
        [
            FakeDist(
                "mylib",
                "0.1",
                {"__editable__.mylib-0.1.pth": f"{src}\n"},
                direct_url={"url": src.as_uri(), "dir_info": {"editable": True}},
                requires=["declared-only"],
            ),
            FakeDist(
                "pluginhost",
                "1.0",
                {"pluginhost/__init__.py": "def load(n):\n    return __import__(n)\n"},
                requires=["mylib"],
            ),
            FakeDist("greetlib", "1.0", {"greetlib/__init__.py": "X = 1\n"}),
        ],
    )
    job = _job(tmp_path, "import pluginhost\n\n\ndef main():\n    return pluginhost.load('x')\n")
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(job))
    (e,) = a.editables
    assert (e.mode, e.reason) == ("whole", "required by pluginhost")
    assert str(src / "mylib" / "plugins.py") in a.local_files
    names = {p.name for p in a.packages}
    assert {"pluginhost", "mylib", "greetlib"} <= names
    assert "declared-only" not in names
    assert "requirement-missing" not in {f.code for f in a.findings}


def test_editable_metadata_lookup_ships_dist_info_without_following_requires(
    tmp_path: Path,
) -> None:
    venv, _ = editable_venv("hatchling")
    job = _job(
        tmp_path,
        "from importlib.metadata import version\n\n\ndef main():\n    return version('mypkg')\n",
    )
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(job))
    (p,) = [p for p in a.packages if p.name == "mypkg"]
    assert p.required_by == ("<import>",)
    assert [e.reason for e in a.editables] == ["its metadata is read"]
    assert "declared-only" not in {p.name for p in a.packages}


def test_why_explains_an_editable_as_local_code(tmp_path: Path) -> None:
    from lfm_pack.analyze.closure import why

    venv, _ = editable_venv("setuptools-src")
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(_job(tmp_path)))
    chains = why("mypkg", a)
    assert any(c[-1].startswith("mypkg (editable pth install, shipped as source") for c in chains)
    assert any(c[:2] == ["job.py:main", "mypkg/core.py:fit"] for c in chains), chains
    assert why("greetlib", a)[0][:2] == ["job.py:main", "mypkg/core.py:fit"]
