"""`lfm-pack analyze --why NAME`: optional members, installed extras, import names, editables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import FakeDist, fake_env

JOB = """\
import json
import tablelib
try:
    import plotlib
except ImportError:
    plotlib = None


def main():
    from sk_learnish.cluster import fit
    return tablelib.X, plotlib, fit, json.dumps(1)
"""


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("why")
    venv = fake_env(
        tmp,
        [
            FakeDist(
                "tablelib",
                "2.0",
                {"tablelib/__init__.py": "X = 1\n"},
                requires=['plotlib; extra == "plot"', 'pytest; extra == "test"'],
                extras=("plot", "test"),
            ),
            FakeDist("plotlib", "3.1", {"plotlib/__init__.py": "import kiwi\n"}, requires=["kiwi"]),
            FakeDist("kiwi", "1.4", {"kiwi/__init__.py": ""}),
            FakeDist(
                "scikit-learnish",
                "1.5",
                {"sk_learnish/__init__.py": "", "sk_learnish/cluster.py": "def fit(): pass\n"},
            ),
        ],
    )
    p = tmp / "proj"
    p.mkdir()
    (p / "job.py").write_text(JOB)
    return p, venv


def why(proj: tuple[Path, Path], name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    p, venv = proj
    return subprocess.run(
        [*lfm_pack_cmd(), "analyze", "--prefix", str(venv), "--why", name, *extra, "job.py:main"],
        cwd=p,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_optional_member_is_explained_with_its_guarded_import(proj: tuple[Path, Path]) -> None:
    proc = why(proj, "plotlib")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert any("job.py:4 (import plotlib, guarded: optional) -> plotlib" in ln for ln in lines)
    assert any("tablelib[plot] (installed extra, optional) -> plotlib" in ln for ln in lines)
    data = json.loads(why(proj, "plotlib", "--json").stdout)
    assert (data["member"], data["optional"]) == ("plotlib", True)


def test_transitive_optional_member(proj: tuple[Path, Path]) -> None:
    proc = why(proj, "kiwi")
    assert proc.returncode == 0, proc.stderr
    assert "plotlib -> kiwi" in proc.stdout


def test_import_name_is_accepted(proj: tuple[Path, Path]) -> None:
    proc = why(proj, "sk_learnish")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("(import sk_learnish.cluster) -> scikit-learnish")
    assert json.loads(why(proj, "sk_learnish.cluster", "--json").stdout)["member"] == (
        "scikit-learnish"
    )
    assert why(proj, "SCIKIT_learnish").returncode == 0  # distribution names normalize


def test_stdlib_and_unknown_names_are_one_line(proj: tuple[Path, Path]) -> None:
    std = why(proj, "json")
    assert std.returncode == 3 and std.stdout == ""
    assert "standard library" in std.stderr and "Traceback" not in std.stderr
    unknown = why(proj, "nosuchthing")
    assert unknown.returncode == 3 and "members: kiwi, plotlib" in unknown.stderr
