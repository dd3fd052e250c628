"""Stand-ins for module-level imports the pack left out because the target never uses them.

The pack rewrites e.g. `import requests` in a shipped local file into
``requests = __import__("lfm_runtime.placeholder", fromlist=["missing"]).missing("requests", "requests")``.
Binding the name costs nothing; *using* it raises ModuleNotFoundError with the reason, so a call
path the analysis missed fails loudly at the point of use instead of silently misbehaving.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any, NoReturn


class _Missing:
    """Raises ModuleNotFoundError on any use (attribute, call, iteration, truth test, ...)."""

    __slots__ = ("_lfm_module", "_lfm_name")

    def __init__(self, module: str, name: str) -> None:
        object.__setattr__(self, "_lfm_module", module)
        object.__setattr__(self, "_lfm_name", name)

    def _lfm_raise(self) -> NoReturn:
        module = object.__getattribute__(self, "_lfm_module")
        name = object.__getattribute__(self, "_lfm_name")
        err = ModuleNotFoundError(
            "{} was left out of this pack because the analysis found no use of it from the "
            "target; the name {!r} was used anyway (a call path the analysis could not see, "
            "e.g. getattr/eval). Re-pack with the missing target or add it explicitly "
            "(lfm-pack pack --include {}).".format(module, name, module.split(".")[0]),
            name=module,
        )
        raise err

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__") and attr not in ("__call__", "__iter__"):
            # Introspection (copy, pickle, doctest, IPython) probes dunders: say "absent".
            raise AttributeError(attr)
        self._lfm_raise()

    def __setattr__(self, attr: str, value: object) -> None:
        self._lfm_raise()

    def __call__(self, *args: object, **kwargs: object) -> Any:
        self._lfm_raise()

    def __iter__(self) -> Any:
        self._lfm_raise()

    def __getitem__(self, key: object) -> Any:
        self._lfm_raise()

    def __bool__(self) -> bool:
        self._lfm_raise()

    def __len__(self) -> int:
        self._lfm_raise()

    def __contains__(self, item: object) -> bool:
        self._lfm_raise()

    def __enter__(self) -> Any:
        self._lfm_raise()

    def __exit__(self, *exc: object) -> Any:
        self._lfm_raise()

    def __repr__(self) -> str:
        module = object.__getattribute__(self, "_lfm_module")
        return f"<module {module!r} left out of this pack by lfm-pack>"


def missing(module: str, name: str) -> object:
    """The placeholder bound to `name` in place of the unreached `import module`."""
    return _Missing(module, name)
