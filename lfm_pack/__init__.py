"""lfm-pack: exact per-function dependency analysis, minimal relocatable packs, and a
lightweight function monitor for running one Python function on many remote cores.

The Python API lives in `lfm_pack.api` and is loaded on first use of one of its names here
(PEP 562), so importing a stage module (`lfm_pack.analyze.reach`, the CLI's commands) does not
pay for the API. `lfm_pack.analyze` and `lfm_pack.pack` are the stage packages, callable as the
API functions (`lfm_pack/_callable.py` says why).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from lfm_pack._version import __version__

if TYPE_CHECKING:
    from lfm_pack.api import (
        LaunchError,
        LimitExceeded,
        Packed,
        RemoteError,
        Result,
        RunError,
        TaskCrashed,
        analyze,
        load,
        pack,
    )
    from lfm_pack.launch.runtime.lfm_runtime.result import UndecodedValue

__all__ = [
    "LaunchError",
    "LimitExceeded",
    "Packed",
    "RemoteError",
    "Result",
    "RunError",
    "TaskCrashed",
    "UndecodedValue",
    "__version__",
    "analyze",
    "load",
    "pack",
]
# the names `__getattr__` takes from `lfm_pack.api` on first use
_FROM_API = frozenset(__all__) - {"UndecodedValue", "__version__", "analyze", "pack"}


def __getattr__(name: str) -> Any:
    if name in _FROM_API:
        return getattr(importlib.import_module("lfm_pack.api"), name)
    if name == "UndecodedValue":
        return importlib.import_module("lfm_pack.launch.runtime.lfm_runtime.result").UndecodedValue
    if not name.startswith("__") and importlib.util.find_spec(f"lfm_pack.{name}") is not None:
        # `import lfm_pack; lfm_pack.api` (and the callable stage packages `analyze`, `pack`)
        return importlib.import_module(f"lfm_pack.{name}")
    raise AttributeError(f"module 'lfm_pack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
