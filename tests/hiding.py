"""What a test hides to prove a pack does not use the build host: the test interpreter's own
prefixes plus whatever the test adds.

A system interpreter (Debian's /usr/bin/python3, which is what a normal user has) lives in
/usr; hiding /usr would hide /bin/sh and every tool the launcher needs, so for it the
interpreter's stdlib and system site dirs are hidden instead. `lfm_pack.pack.verify` applies
the same rule to the build environment (`hide_targets`).
"""

from __future__ import annotations

import os
import sys
import sysconfig

from lfm_pack.pack.verify import SYSTEM_DIRS


def host_dirs(*extra: str | os.PathLike[str]) -> list[str]:
    """Directories to cover with tmpfs: the test interpreter's prefixes and `extra`."""
    dirs = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *extra)}
    if dirs & SYSTEM_DIRS:
        dirs -= SYSTEM_DIRS
        paths = sysconfig.get_paths()
        minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
        for cand in (
            paths["stdlib"],
            paths["platstdlib"],
            "/usr/lib/python3/dist-packages",
            f"/usr/local/lib/python{minor}/dist-packages",
        ):
            if os.path.isdir(cand):
                dirs.add(os.path.realpath(cand))
    # an outer directory hides the inner ones already
    return sorted(d for d in dirs if not any(d != o and d.startswith(o + "/") for o in dirs))
