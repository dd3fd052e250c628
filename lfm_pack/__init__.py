"""lfm-pack: exact per-function dependency analysis, minimal relocatable packs, and a
lightweight function monitor for running one Python function on many remote cores."""

__version__ = "0.1.0"

# The Python API (lfm_pack/api.py). `analyze` and `pack` are also subpackages: at run time the
# names are those packages made callable; type checkers see the API functions.
from typing import TYPE_CHECKING as _TYPE_CHECKING

from lfm_pack import api as _api
from lfm_pack.api import (
    LaunchError,
    LimitExceeded,
    Packed,
    RemoteError,
    Result,
    RunError,
    TaskCrashed,
    load,
)
from lfm_pack.launch.runtime.lfm_runtime.result import UndecodedValue

_api.install_callable_subpackages()
if _TYPE_CHECKING:
    from lfm_pack.api import analyze, pack

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
