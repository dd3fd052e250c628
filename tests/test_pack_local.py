"""Local code in a pack: nested import roots, non-UTF-8 sources, stdlib imports left alone.

Each test packs real files with the real CLI, runs the real launcher from another directory and
compares with what Python itself does at home.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, lfm_pack_cmd

FIXTURE = ROOT / "tests" / "fixtures" / "reach" / "package_siblings"


def _pack(cwd: Path, out: Path, *targets: str) -> None:
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", *targets, "-o", str(out), "--name", "p", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def _run(out: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cache.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(out / "p-run"), "--cache-dir", str(cache), *args],
        cwd=cache.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_script_inside_a_package_with_relative_and_sibling_imports(tmp_path: Path) -> None:
    """`from . import shared` needs the package root; `import helpers` the script's own dir."""
    proj = tmp_path / "proj"
    shutil.copytree(FIXTURE, proj, ignore=shutil.ignore_patterns("__pycache__", "expected.json"))
    home = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0] = ['pkg', '.']; import pkg.job, json;"
            " print(json.dumps(pkg.job.main()))",
        ],
        cwd=proj,
        capture_output=True,
        text=True,
        check=True,
    )
    _pack(proj, tmp_path / "out", "pkg/job.py:main")
    ran = _run(tmp_path / "out", tmp_path / "run" / "cache")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == json.loads(home.stdout)


LATIN1 = b"# -*- coding: latin-1 -*-\nimport not_installed_anywhere\n\n\ndef f():\n    return '\xe9t\xe9'\n"
BOM = "\ufeffimport not_installed_anywhere\n\n\ndef g():\n    return 'bom'\n".encode()
FORMFEED = (
    b'import not_installed_anywhere\n\n\ndef h():\n    """one\x0c page"""\n    x = 1\n'
    b"    return x + 1\n"
)
STDLIB = b"import json  # unreached: must stay a real import\n\n\ndef k():\n    return 2\n\n\ndef other():\n    return json.dumps(1)\n"


def test_placeholders_keep_encodings_and_line_ends_and_spare_the_stdlib(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    for name, data in (
        ("lat.py", LATIN1),
        ("bom.py", BOM),
        ("ff.py", FORMFEED),
        ("std.py", STDLIB),
    ):
        (proj / name).write_bytes(data)
    out = tmp_path / "out"
    # leftovers of a pack that was killed: its staging dir names a pid that no longer runs
    dead = out / ".lfm-pack-killed"
    dead.mkdir(parents=True)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (dead / ".pid").write_text(gone.stdout.strip())
    (dead / "simulate.tar.gz").write_bytes(b"half")
    _pack(proj, out, "lat.py:f", "bom.py:g", "ff.py:h", "std.py:k")
    assert not dead.exists()
    assert sorted(p.name for p in out.iterdir()) == ["p-run", "p.lock.json", "p.tar.gz"]
    cache = tmp_path / "run" / "cache"
    for target, want in (("lat.py:f", "été"), ("bom.py:g", "bom"), ("ff.py:h", 2), ("std.py:k", 2)):
        ran = _run(out, cache, "--target", target)
        assert ran.returncode == 0, (target, ran.stderr)
        assert json.loads(ran.stdout) == want
    env = next(p for p in cache.iterdir() if (p / ".lfm").is_dir())
    app = env / ".lfm" / "app" / "0"
    lat = (app / "lat.py").read_bytes()
    assert lat.startswith(b"# -*- coding: latin-1 -*-\n") and b"\xe9t\xe9" in lat
    assert b"not_installed_anywhere" in lat and b"import not_installed_anywhere" not in lat
    assert (app / "bom.py").read_bytes().startswith(b"\xef\xbb\xbf")
    assert (app / "ff.py").read_bytes().count(b"\n") == FORMFEED.count(b"\n")
    assert (app / "std.py").read_bytes() == STDLIB  # stdlib import untouched


def test_missing_import_refused_unless_allowed(tmp_path: Path) -> None:
    """A reached import installed nowhere fails the pack (exit 6, names it and where) unless
    --allow-missing: then a call that never takes that branch runs from the pack."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "job.py").write_text(
        "def f(gpu=False):\n    if gpu:\n        import cupy_not_here\n\n"
        "        return cupy_not_here.zeros(1)\n    return 'cpu'\n"
    )
    refused = subprocess.run(
        [*lfm_pack_cmd(), "pack", "job.py:f", "-o", str(tmp_path / "out"), "--name", "p"],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert refused.returncode == 6
    assert "cupy_not_here" in refused.stderr and "job.py:3" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    ok = subprocess.run(
        [
            *lfm_pack_cmd(),
            "pack",
            "job.py:f",
            "-o",
            str(tmp_path / "out"),
            "--name",
            "p",
            "--allow-missing",
        ],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    ran = _run(tmp_path / "out", tmp_path / "run" / "cache")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == "cpu"


def test_unreached_local_imports_are_not_called_left_out(tmp_path: Path) -> None:
    """`from ._impl import x` / `from . import plotting` unread by the target: named as local
    modules that stay home (never as if a distribution were left out); once a reached
    function needs `_impl` it ships and is not listed at all."""
    pkg = tmp_path / "proj" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_impl.py").write_text("def helper():\n    return 2\n")
    (pkg / "plotting.py").write_text("def draw():\n    return 3\n")
    (pkg / "job.py").write_text(
        "import json\nimport requests\nfrom ._impl import helper\nfrom . import plotting\n\n"
        "def main():\n    return 1\n\ndef other():\n    return helper() + plotting.draw()\n"
    )
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", "mypkg/job.py:main", "-o", "out", "--allow-missing"],
        cwd=tmp_path / "proj",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = " ".join(proc.stderr.split())
    assert (
        "not shipped (imported but never reached; a stand-in raises if used): requests, "
        "._impl, .plotting"
    ) in summary
    assert "left out" not in summary
    (pkg / "job.py").write_text(
        "import requests\nfrom ._impl import helper\nfrom . import plotting\n\n"
        "def main():\n    return helper()\n\ndef other():\n    return plotting.draw()\n"
    )
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", "mypkg/job.py:main", "-o", "out2", "--allow-missing"],
        cwd=tmp_path / "proj",
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = " ".join(proc.stderr.split())
    assert "_impl" not in summary and "plotting" in summary
    names = subprocess.run(
        ["tar", "tzf", str(tmp_path / "proj" / "out2" / "main.tar.gz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any(n.endswith("mypkg/_impl.py") for n in names)
