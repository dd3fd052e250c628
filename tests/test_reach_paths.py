"""Paths a module computes from its own location: sys.path edits (local roots) and data files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import FakeDist, env_info, fake_env

from lfm_pack.analyze.pipeline import analyze_in
from lfm_pack.analyze.reach_paths import scan_file
from lfm_pack.errors import UsageError
from lfm_pack.pack.verify import namespace_available, run_hidden


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize(
    "line",
    [
        'sys.path.insert(0, "../lib")',
        "sys.path.append(os.path.join(os.path.dirname(__file__), '..', 'lib'))",
        "sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'lib'))",
        "sys.path.append(os.path.join(HERE, os.pardir, 'lib')) if False else "
        "sys.path.append(str(Path(__file__).parents[1] / 'lib'))",
        "sys.path[:0] = [os.path.abspath(os.path.join(HERE, '../lib'))]",
        "sys.path += [str(ROOT.joinpath('lib'))]",
    ],
)
def test_literal_sys_path_edits_are_evaluated(tmp_path: Path, line: str) -> None:
    _write(
        tmp_path,
        {
            "scripts/job.py": "import os, sys\nfrom pathlib import Path\n"
            "HERE = os.path.dirname(os.path.abspath(__file__))\n"
            "ROOT = Path(__file__).parent.parent\n" + line + "\n",
            "lib/helpers.py": "",
        },
    )
    found = scan_file(str(tmp_path / "scripts" / "job.py"))
    assert str(tmp_path / "lib") in {e.directory for e in found.edits}
    assert not found.data  # a sys.path directory is not a data file


def test_non_literal_sys_path_edit_is_reported_unevaluated(tmp_path: Path) -> None:
    _write(tmp_path, {"job.py": "import os, sys\nsys.path.append(os.environ['LIBDIR'])\n"})
    (edit,) = scan_file(str(tmp_path / "job.py")).edits
    assert edit.directory is None and "LIBDIR" in edit.code


@pytest.mark.parametrize(
    ("expr", "rel"),
    [
        ('Path(__file__).parent / "data.csv"', "data.csv"),
        ('open(os.path.join(os.path.dirname(__file__), "data", "x.json"))', "data/x.json"),
        ('Path(__file__).with_name("table.tsv")', "table.tsv"),
        ('os.path.dirname(os.path.abspath(__file__)) + "/cfg.yaml"', "cfg.yaml"),
    ],
)
def test_data_files_next_to_the_module(tmp_path: Path, expr: str, rel: str) -> None:
    _write(
        tmp_path,
        {"job.py": f"import os\nfrom pathlib import Path\n\n\ndef load():\n    return {expr}\n"},
    )
    (ref,) = scan_file(str(tmp_path / "job.py")).data
    assert ref.path == str(tmp_path / rel) and ref.function == "load"


def test_files_without_file_or_sys_path_are_not_parsed(tmp_path: Path) -> None:
    _write(tmp_path, {"job.py": "def f(:\n"})  # a syntax error costs nothing: never parsed
    found = scan_file(str(tmp_path / "job.py"))
    assert found.edits == () and found.data == ()


def _venv(tmp_path: Path) -> Path:
    return fake_env(
        tmp_path,
        [FakeDist("greet", "1.0", {"greet/__init__.py": "def hello(n):\n    return 'hi ' + n\n"})],
    )


JOB = (
    "import sys\n"
    'sys.path.insert(0, "../lib")\n'
    "import helpers\n\n\n"
    "def main(n):\n"
    "    return helpers.greet_all(n)\n"
)


def test_sys_path_edit_makes_the_directory_a_local_root(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = tmp_path / "proj"
    _write(
        proj,
        {
            "scripts/job.py": JOB,
            "lib/helpers.py": "import greet\n\n\ndef greet_all(n):\n    return greet.hello(n)\n",
        },
    )
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(proj / "scripts"))
    assert str(proj / "lib") in a.local_roots
    assert str(proj / "lib" / "helpers.py") in a.local_files
    assert [p.name for p in a.packages] == ["greet"]
    assert not a.unresolved
    (edit,) = [f for f in a.findings if f.code == "sys-path-edit"]
    assert str(proj / "lib") in edit.message and edit.location is not None


@pytest.mark.skipif(not namespace_available(), reason="needs a private mount namespace")
def test_sys_path_edit_packs_moves_and_runs(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = tmp_path / "proj"
    _write(
        proj,
        {
            "scripts/job.py": JOB,
            "lib/helpers.py": "import greet\n\n\ndef greet_all(n):\n    return greet.hello(n)\n",
        },
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", "--prefix", str(venv), "job.py:main", "-o", str(out)],
        cwd=proj / "scripts",
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "moved"
    shutil.copytree(out, dest)
    hide = sorted(
        {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, venv, proj)} - {"/", "/usr"}
    )
    run = run_hidden(
        [str(dest / "main-run"), "--cache-dir", str(tmp_path / "nc"), "--", "ada"], hide
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "hi ada"


def test_non_literal_sys_path_names_the_option_and_source_root_fixes_it(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = tmp_path / "proj"
    job = "import os, sys\nsys.path.append(os.environ['LIB'])\nimport helpers\n\n\ndef main():\n    return helpers.X\n"
    _write(proj, {"job.py": job, "vendor/helpers.py": "X = 1\n"})
    env = env_info(venv)
    a = analyze_in(["job.py:main"], env, cwd=str(proj))
    assert [r.site.module for r in a.unresolved] == ["helpers"]
    (dyn,) = [f for f in a.findings if f.code == "sys-path-dynamic"]
    assert "--source-root" in dyn.message
    fixed = analyze_in(["job.py:main"], env, cwd=str(proj), source_roots=["vendor"])
    assert not fixed.unresolved
    assert str(proj / "vendor" / "helpers.py") in fixed.local_files
    with pytest.raises(UsageError, match="--source-root nope"):
        analyze_in(["job.py:main"], env, cwd=str(proj), source_roots=["nope"])
    # the pack's refusal names the option too
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", "--prefix", str(venv), "job.py:main", "-o", str(tmp_path / "o")],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0 and "--source-root" in proc.stderr, proc.stderr


def test_data_file_finding_names_the_existing_path_and_the_option(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = tmp_path / "proj"
    job = (
        "from pathlib import Path\n\n\n"
        "def main():\n"
        '    return (Path(__file__).parent / "data.csv").read_text()\n'
    )
    _write(proj, {"job.py": job, "data.csv": "a,b\n"})
    a = analyze_in(["job.py:main"], env_info(venv), cwd=str(proj))
    (f,) = [f for f in a.findings if f.code == "data-file"]
    assert f"--extra-file {proj / 'data.csv'}" in f.message
    assert "main()" in f.message and f.location is not None and f.location.line == 5
