"""The function's own exception, rebuilt on the caller's side (Packed, WarmServer, Dask, Parsl).

The node sends a raised exception as its traceback text, a pickle of the exception object and
its type's module/qualname/args (`lfm_runtime.runner.exception_payload`). Here it becomes an
instance of a class that derives from *both* the original type and lfm-pack's own error class
(`RemoteError` for `Packed`, `WarmCallError` for `WarmServer`), so an existing
`except ValueError:` keeps working and so does `except lfm_pack.RemoteError:`; the class
carries the original's name, module, `__str__` and attributes, and the node's traceback is
attached as `__cause__` (a `RemoteTraceback`, as `concurrent.futures` does), so a traceback
printed on the caller shows where it happened on the node.

When the type cannot be imported here (the user's module is not on this side's path), nothing
is guessed: the caller gets the plain lfm-pack error, as before. Pickling such an exception
(Dask and Parsl send exceptions back to the client) keeps only lfm-pack's fields and rebuilds
the original on the receiving side, where the type may well be importable.
"""

from __future__ import annotations

import base64
import contextlib
import copyreg
import importlib
import pickle
from collections.abc import Callable, Mapping
from typing import Any


class RemoteTraceback(Exception):
    """The traceback as it happened on the node (the `__cause__` of a rebuilt exception)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text.rstrip()


class _RemoteMeta(type):
    """Metaclass of the derived classes, so they pickle as (original type, lfm-pack base)."""

    __lfm_orig__: type[BaseException]
    __lfm_base__: type[BaseException]


_CLASSES: dict[tuple[type[BaseException], type[BaseException]], type[BaseException] | None] = {}


def derived_class(
    orig: type[BaseException], base: type[BaseException]
) -> type[BaseException] | None:
    """A class deriving from `orig` and `base` (cached), or None when none can exist.

    Only `Exception` subclasses qualify (a KeyboardInterrupt must not become an Exception);
    a type whose instance layout conflicts with `base` or that forbids subclassing gives None.
    """
    key = (orig, base)
    if key in _CLASSES:
        return _CLASSES[key]
    cls: Any = None
    if issubclass(orig, Exception) and not issubclass(orig, base) and orig is not Exception:
        namespace = {
            "__module__": orig.__module__,
            "__qualname__": orig.__qualname__,
            "__doc__": orig.__doc__,
            "__str__": orig.__str__,
            "__repr__": orig.__repr__,
            "__reduce__": base.__reduce__,
            "__lfm_orig__": orig,
            "__lfm_base__": base,
        }
        try:
            cls = _RemoteMeta(orig.__name__, (orig, base), namespace)
        except TypeError:  # layout conflict, or a type that cannot be subclassed
            cls = None
    made: type[BaseException] | None = cls
    _CLASSES[key] = made
    return made


def _reduce_class(cls: _RemoteMeta) -> tuple[Any, ...]:
    return (derived_class, (cls.__lfm_orig__, cls.__lfm_base__))


copyreg.pickle(_RemoteMeta, _reduce_class)


def load_original(err: Mapping[str, Any]) -> BaseException | None:
    """The exception object the function raised, if its type can be had on this side."""
    data = err.get("pickle")
    if isinstance(data, str) and data:
        try:
            exc = pickle.loads(base64.b64decode(data))
        except Exception:  # its module is not importable here, or it changed
            exc = None
        if isinstance(exc, BaseException):
            return exc
    mod, qual = err.get("module"), err.get("qualname")
    if not isinstance(mod, str) or not isinstance(qual, str) or "<locals>" in qual:
        return None
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except Exception:  # ImportError, AttributeError, or a failing import
        return None
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        return None
    inst = obj.__new__(obj)  # its __init__ may not take these args: do not call it
    args = err.get("args")
    inst.args = tuple(args) if isinstance(args, list) else (str(err.get("message") or ""),)
    attrs = err.get("attrs")
    if isinstance(attrs, dict):
        inst.__dict__.update(attrs)  # the simple attributes its __init__ had set on the node
    return inst


def rebuild(
    err: Mapping[str, Any],
    base: type[BaseException],
    init_base: Callable[[BaseException], None],
) -> BaseException | None:
    """The function's own exception as an instance of `derived_class(type, base)`.

    `init_base` sets `base`'s own fields (result, exit code...) on the new instance. None when
    the original type is not available here (the caller then raises plain `base`). A type that
    cannot be derived from is returned as the original object itself.
    """
    orig = load_original(err)
    if orig is None:
        return None
    tb = str(err.get("traceback") or "")
    cls = derived_class(type(orig), base)
    if cls is None:
        out = orig
    else:
        ctor = _constructor_args(orig)
        out = cls.__new__(cls, *ctor)
        # C-level state (OSError.errno/filename, UnicodeError fields) comes from __init__; a
        # custom __init__ with another signature may refuse the args (its __dict__ follows)
        with contextlib.suppress(Exception):
            type(orig).__init__(out, *ctor)
        out.args = orig.args
        init_base(out)
        out.__dict__.update(getattr(orig, "__dict__", {}))
    if tb:
        out.__cause__ = RemoteTraceback(tb)
    return out


def _constructor_args(exc: BaseException) -> tuple[Any, ...]:
    """The arguments pickle would call the type with (OSError's include the filename)."""
    try:
        rv = exc.__reduce__()
    except Exception:
        return exc.args
    if isinstance(rv, tuple) and len(rv) >= 2 and rv[0] is type(exc) and isinstance(rv[1], tuple):
        return rv[1]
    return exc.args


def is_rebuilt(exc: BaseException) -> bool:
    """True for an exception rebuilt by `rebuild` (a derived class)."""
    return isinstance(type(exc), _RemoteMeta)


__all__ = ["RemoteTraceback", "derived_class", "is_rebuilt", "load_original", "rebuild"]
