"""`pack --include/--exclude/--skip-optional`: the closure they ship and the lock that says so.

`--include NAME` ships NAME *with its closure*, pinned like any member (`required_by:
["<include>"]`), whether NAME is a distribution, an import name or a local module; the hints
that tell users to `--include` something (placeholders, dynamic imports) produce a working
pack. The lock beside a `--exclude` / `--skip-optional` pack describes that archive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import FakeDist, fake_env

from lfm_pack.pack.verify import namespace_available, run_hidden

needs_namespace = pytest.mark.skipif(
    not namespace_available(),
    reason="needs a private mount namespace (root, or unprivileged user namespaces)",
)


def _venv(tmp_path: Path) -> Path:
    return fake_env(
        tmp_path,
        [
            FakeDist(
                "greet",
                "1.0",
                {
                    "greet/__init__.py": "import greetdep\n\n\ndef hello(n):\n    return greetdep.P + n\n"
                },
                requires=["greetdep>=1"],
            ),
            FakeDist("greetdep", "1.2", {"greetdep/__init__.py": "P = 'hello, '\n"}),
            FakeDist("Py-Greet-Names", "3.0", {"pgreet/__init__.py": "NAME = 'pgreet'\n"}),
            FakeDist(
                "requests",
                "2.99",
                {"requests/__init__.py": "get = 'the real requests'\n"},
                requires=["urllib3"],
            ),
            FakeDist("urllib3", "2.0", {"urllib3/__init__.py": ""}),
            FakeDist(
                "plotlib",
                "1.0",
                {"plotlib/__init__.py": "import plotdep\n"},
                requires=["plotdep", "greetdep"],
            ),
            FakeDist("plotdep", "1.0", {"plotdep/__init__.py": ""}),
        ],
    )


def _proj(tmp_path: Path, files: dict[str, str]) -> Path:
    proj = tmp_path / "proj"
    for rel, text in files.items():
        (proj / rel).parent.mkdir(parents=True, exist_ok=True)
        (proj / rel).write_text(text)
    return proj


def pack(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _run(
    out: Path, tmp_path: Path, hide: list[Path], *args: str
) -> subprocess.CompletedProcess[str]:
    dest = tmp_path / "moved" / out.name
    shutil.copytree(out, dest)
    launcher = next(p for p in dest.iterdir() if p.name.endswith("-run"))
    dirs = sorted(
        {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}
        | {os.path.realpath(p) for p in hide}
    )
    return run_hidden(
        [str(launcher), "--cache-dir", str(tmp_path / "nc"), "--", *args],
        [d for d in dirs if d not in ("/", "/usr")],
    )


def _lock(out: Path) -> dict[str, object]:
    (lock,) = out.glob("*.lock.json")
    data = json.loads(lock.read_text())
    assert isinstance(data, dict)
    return data


def _pkgs(lock: dict[str, object]) -> dict[str, dict[str, object]]:
    packages = lock["packages"]
    assert isinstance(packages, list)
    return {p["name"]: p for p in packages}


DYNAMIC = (
    "import importlib\n\n\ndef f(name, arg):\n    return importlib.import_module(name).hello(arg)\n"
)


@needs_namespace
def test_include_ships_the_distribution_with_its_closure(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": DYNAMIC})
    out = tmp_path / "out"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(out), "--include", "greet")
    pkgs = _pkgs(_lock(out))
    assert pkgs["greet"]["required_by"] == ["<include>"]
    assert pkgs["greet"]["optional"] is False
    assert pkgs["greetdep"]["required_by"] == ["greet"]  # the closure, pinned
    assert pkgs["greetdep"]["requirement"] == "greetdep==1.2"
    run = _run(out, tmp_path, [venv, proj], "greet", "ada")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "hello, ada"


def test_include_accepts_an_import_name(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": DYNAMIC})
    out = tmp_path / "out"
    pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:f",
        "-o",
        str(out),
        "--include",
        "pgreet",
        "--no-verify",
    )
    assert _pkgs(_lock(out))["Py-Greet-Names"]["required_by"] == ["<include>"]


@needs_namespace
def test_placeholder_hint_to_include_produces_a_working_pack(tmp_path: Path) -> None:
    """`import requests` unreached by the analysis (used through eval) is a placeholder; the
    node's error says `--include requests`, and that pack then works."""
    job = "import requests\n\n\ndef f():\n    return eval('requests').get\n"
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": job})
    plain = tmp_path / "plain"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(plain))
    failed = _run(plain, tmp_path, [venv, proj])
    assert failed.returncode == 81, failed.stderr
    assert "--include requests" in failed.stdout + failed.stderr
    fixed = tmp_path / "fixed"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(fixed), "--include", "requests")
    lock = _lock(fixed)
    assert not lock["placeholders"]  # the import is real again
    assert _pkgs(lock)["urllib3"]["required_by"] == ["requests"]
    run = _run(fixed, tmp_path, [venv, proj])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "the real requests"


@needs_namespace
def test_include_a_local_module_follows_it_whole(tmp_path: Path) -> None:
    """A plugin loaded by a non-literal name (the dynamic-import finding says --include)."""
    venv = _venv(tmp_path)
    proj = _proj(
        tmp_path,
        {
            "job.py": DYNAMIC,
            "plugins/__init__.py": "",
            "plugins/loud.py": "import greet\n\n\ndef hello(n):\n    return greet.hello(n).upper()\n",
            "plugins/unused.py": "import requests\n",
        },
    )
    out = tmp_path / "out"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(out), "--include", "plugins.loud")
    lock = _lock(out)
    assert {"greet", "greetdep"} <= set(_pkgs(lock))
    assert "requests" not in _pkgs(lock)
    files = lock["local_files"]
    assert isinstance(files, list)
    assert str(proj / "plugins" / "loud.py") in files
    assert str(proj / "plugins" / "unused.py") not in files
    run = _run(out, tmp_path, [venv, proj], "plugins.loud", "ada")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "HELLO, ADA"


def test_include_of_an_unknown_name_is_one_line(tmp_path: Path) -> None:
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": DYNAMIC})
    out = tmp_path / "out"
    proc = pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:f",
        "-o",
        str(out),
        "--include",
        "nosuch_xyz",
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--include nosuch_xyz" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_exclude_lock_describes_the_archive(tmp_path: Path) -> None:
    job = "import plotlib\nimport greet\n\n\ndef f():\n    return greet.hello('x'), plotlib\n"
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": job})
    out = tmp_path / "out"
    summary = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:f",
            "-o",
            str(out),
            "--exclude",
            "plotlib",
            "--no-verify",
            "--json",
        ).stdout
    )
    lock = _lock(out)
    pkgs = _pkgs(lock)
    assert set(pkgs) == {"greet", "greetdep"}
    assert pkgs["greetdep"]["required_by"] == ["greet"]  # plotlib, left out, is not listed
    excluded = lock["excluded"]
    assert isinstance(excluded, list)
    assert sorted(excluded, key=lambda x: x["name"]) == [
        {
            "name": "plotdep",
            "version": "1.0",
            "reason": "only needed by plotlib, which the pack leaves out",
        },
        {"name": "plotlib", "version": "1.0", "reason": "--exclude"},
    ]
    assert sorted(summary["distributions"]) == ["greet==1.0", "greetdep==1.2"]
    # the lock beside the pack packs the same archive again
    again = tmp_path / "again"
    pack(proj, "--lock", str(next(out.glob("*.lock.json"))), "-o", str(again), "--no-verify")
    assert set(_pkgs(_lock(again))) == {"greet", "greetdep"}


def test_skip_optional_lock_lists_only_what_ships(tmp_path: Path) -> None:
    job = (
        "import greet\n\n\ndef f():\n    try:\n        import requests\n"
        "    except ImportError:\n        requests = None\n"
        "    return greet.hello('x'), requests is None\n"
    )
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": job})
    out = tmp_path / "out"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(out), "--skip-optional", "--no-verify")
    lock = _lock(out)
    assert set(_pkgs(lock)) == {"greet", "greetdep"}
    reasons = {x["name"]: x["reason"] for x in lock["excluded"]}  # type: ignore[union-attr]
    assert set(reasons) == {"requests", "urllib3"}
    assert "--skip-optional" in reasons["requests"]


@needs_namespace
def test_local_placeholder_hint_to_include_produces_a_working_pack(tmp_path: Path) -> None:
    """`from ._impl import helper` in a shipped package, used only through eval: the node's
    error names the absolute module (`--include pkg`), and that pack works."""
    venv = _venv(tmp_path)
    proj = _proj(
        tmp_path,
        {
            "job.py": "import pkg\n\n\ndef f():\n    return pkg.run()\n",
            "pkg/__init__.py": "from ._impl import helper\n\n\ndef run():\n    return eval('helper')()\n",
            "pkg/_impl.py": "import greet\n\n\ndef helper():\n    return greet.hello('impl')\n",
        },
    )
    plain = tmp_path / "plain"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(plain))
    failed = _run(plain, tmp_path, [venv, proj])
    assert failed.returncode == 81, failed.stderr
    out = failed.stdout + failed.stderr
    assert "pkg._impl was left out" in out and "--include pkg)" in out, out
    fixed = tmp_path / "fixed"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(fixed), "--include", "pkg")
    run = _run(fixed, tmp_path, [venv, proj])
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "hello, impl"


@needs_namespace
def test_metadata_lookup_hint_to_include_produces_a_working_pack(tmp_path: Path) -> None:
    job = "from importlib.metadata import version\n\n\ndef f(name):\n    return version(name)\n"
    venv = _venv(tmp_path)
    proj = _proj(tmp_path, {"job.py": job})
    out = tmp_path / "out"
    pack(proj, "--prefix", str(venv), "job.py:f", "-o", str(out), "--include", "greet")
    run = _run(out, tmp_path, [venv, proj], "greet")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "1.0"
