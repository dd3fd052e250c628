"""Can this node run the pack? Checked before the target is imported, with a typed answer.

The launcher (sh) checks CPU architecture and glibc *before* unpacking, since a foreign
interpreter cannot even start; this module repeats the checks from inside the packed
interpreter and adds the Python ABI (the interpreter that started is the one the pack was
built for), so a mismatch is an exit code, not an ImportError deep in a C extension.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any


def _ver(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def node_glibc() -> str | None:
    """glibc version of this node (None on musl or when unknown)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").split()[-1]  # type: ignore[union-attr]
    except (ValueError, OSError, AttributeError, IndexError):
        import platform

        lib, version = platform.libc_ver()
        return version if lib == "glibc" and version else None


def check(manifest: dict[str, Any]) -> list[str]:
    """Problems that make this node unable to run the pack (empty = fine)."""
    problems: list[str] = []
    machine = manifest.get("machine")
    here = os.uname().machine
    if machine and here != machine:
        problems.append(f"CPU architecture {here}, the pack was built for {machine}")
    need = manifest.get("glibc_required")
    have = node_glibc()
    if need and have and _ver(have) < _ver(str(need)):
        problems.append(f"glibc {have} on this node, the pack needs >= {need}")
    want = (manifest.get("python") or {}).get("version")
    if want:
        have_py = "%d.%d" % sys.version_info[:2]
        if _ver(str(want))[:2] != _ver(have_py)[:2]:
            problems.append(f"packed interpreter is Python {have_py}, manifest says {want}")
    return problems
