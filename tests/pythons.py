"""Find Python interpreters for cross-version tests at run time, on whatever machine runs them.

No test names a home directory: a fresh CI runner, a laptop and an unprivileged HPC user have
different interpreters in different places. `find_python("3.10")` looks where people keep them
(`$LFM_TEST_PYTHONS`, PATH, pyenv/uv/asdf/conda roots, /usr/bin, /usr/local/bin, /opt) and
returns the real path of a runnable CPython of that minor version, or None; `needs_python`
turns that into a per-test skip that names the requirement.

`base_python()` is the interpreter the tests run on, resolved to its base (a venv's `home`),
the one tests copy or build envs from; `other_pythons()` lists every other minor version found
(the runtime's own support range is 3.8+).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest


def _candidates(minor: str) -> list[str]:
    name = f"python{minor}"
    out: list[str] = []
    extra = os.environ.get("LFM_TEST_PYTHONS", "")
    for item in extra.split(os.pathsep):
        if item:
            out.append(item)
    found = shutil.which(name)
    if found:
        out.append(found)
    roots = [
        os.environ.get("PYENV_ROOT", ""),
        os.path.expanduser("~/.pyenv"),
        os.path.expanduser("~/.local/share/uv/python"),
        os.path.expanduser("~/.asdf/installs/python"),
    ]
    for root in filter(None, roots):
        out += sorted(glob.glob(os.path.join(root, "versions", f"{minor}*", "bin", name)))
        out += sorted(glob.glob(os.path.join(root, f"cpython-{minor}*", "bin", name)))
        out += sorted(glob.glob(os.path.join(root, f"{minor}*", "bin", name)))
    for d in ("/usr/bin", "/usr/local/bin", "/opt/python/bin"):
        out.append(os.path.join(d, name))
    out += sorted(glob.glob(f"/opt/*/bin/{name}")) + sorted(glob.glob(f"/opt/python*/bin/{name}"))
    return out


@functools.cache
def _version_of(exe: str) -> str | None:
    try:
        proc = subprocess.run(
            [exe, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


@functools.cache
def find_python(minor: str) -> str | None:
    """The real path of a runnable CPython `minor` (e.g. "3.10"), or None."""
    for exe in _candidates(minor):
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            real = os.path.realpath(exe)
            if _version_of(real) == minor:
                return real
    return None


def needs_python(minor: str) -> pytest.MarkDecorator:
    """Skip the test unless a CPython `minor` is found (the reason names the version)."""
    import pytest  # here, so .ci/as-user-pass.sh can use find_python without pytest

    return pytest.mark.skipif(
        find_python(minor) is None,
        reason=f"needs a CPython {minor} interpreter (none found; set LFM_TEST_PYTHONS)",
    )


@functools.cache
def base_python() -> str:
    """The base interpreter of the one running the tests (a venv's python resolves to it)."""
    exe = os.path.realpath(sys.executable)
    if sys.prefix != sys.base_prefix:
        minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
        for cand in (
            os.path.join(sys.base_prefix, "bin", f"python{minor}"),
            os.path.join(sys.base_prefix, "bin", "python3"),
        ):
            if os.path.isfile(cand):
                return os.path.realpath(cand)
    return exe


def other_pythons(versions: tuple[str, ...] = ("3.8", "3.9", "3.10", "3.12", "3.13")) -> list[str]:
    """Minor versions (other than the running one) with an interpreter on this machine."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return [v for v in versions if v != here and find_python(v) is not None]
