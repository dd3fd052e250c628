"""Where lfm-pack keeps things on the host: one place, so caches and the runtime are never
looked for in two spellings of the same directory.

* The user cache, `${XDG_CACHE_HOME:-~/.cache}/lfm-pack/<part>/` (index, reach summaries,
  closures, packs made by the Python API). XDG is what HPC sites redirect to scratch when home
  quotas are small, so every cache honours it.
* The node runtime: `lfm_runtime`, the stdlib-only package copied into every archive, lives in
  `lfm_pack/launch/runtime/` so lfm-pack itself can import the same code.
"""

from __future__ import annotations

import os
from pathlib import Path

#: the directory that holds the `lfm_runtime` package (what goes on the runtime's sys.path)
RUNTIME_HOLDER = Path(__file__).resolve().parent / "launch" / "runtime"
#: the `lfm_runtime` package itself, copied into every archive as `.lfm/runtime/lfm_runtime`
RUNTIME_PACKAGE = RUNTIME_HOLDER / "lfm_runtime"


def user_cache_dir(*parts: str) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/lfm-pack/<parts...>` (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "lfm-pack", *parts)
