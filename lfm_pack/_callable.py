"""Why `lfm_pack.analyze(fn)` and `import lfm_pack.analyze.reach` both work.

The design card fixes the layout (`lfm_pack/analyze/`, `lfm_pack/pack/` are the stage
packages) and the documented API is `lfm_pack.analyze(fn)` / `lfm_pack.pack(fn, dir)`. Python
binds a subpackage to its parent's attribute of the same name on first import, so a plain
function `lfm_pack.pack` would be replaced by the package the first time any stage module is
imported. Each stage package therefore declares *itself* callable, from its own `__init__`,
with the class below: calling it imports `lfm_pack.api` only then, so importing a stage
module never loads the Python API (no upward import) and nothing rewrites another module's
class. Type checkers are told the names are the API functions (see `lfm_pack/__init__.py`),
which is how users call them.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any


class StagePackage(types.ModuleType):
    """A stage package that is also the API function named by its `__api_function__`."""

    def _api(self) -> Any:
        api = importlib.import_module("lfm_pack.api")
        return getattr(api, self.__dict__["__api_function__"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._api()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._api())


def make_callable(module_name: str, api_function: str) -> None:
    """Make the (already executing) package `module_name` call `lfm_pack.api.<api_function>`."""
    module = sys.modules[module_name]
    module.__dict__["__api_function__"] = api_function
    if type(module) is types.ModuleType:
        module.__class__ = StagePackage
