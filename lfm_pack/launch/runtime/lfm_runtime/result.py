"""Return values on their way back: one encoder for single-shot and warm mode, one decoder.

A function that returned normally must never lose its value (docs/launcher.md, "Return
values"). The node writes the value in one of three formats:

- ``json`` (the CLI default): plain JSON a person or `jq` reads. JSON's own types pass as they
  are; tuples become lists, sets sorted lists, numpy arrays nested lists, numpy scalars numbers,
  datetimes ISO 8601 strings, timedeltas seconds, paths strings, dataclasses objects, Decimal and
  Fraction exact strings, complex ``{"real", "imag"}``, bytes base64 strings.
- ``typed`` (what lfm_pack's Python API asks for): JSON whose non-JSON types carry a ``"$lfm"``
  tag, so `decode_typed` gives back the *same* types (tuple, set, frozenset, dict with non-str
  keys, bytes, complex, Decimal, Fraction, datetime/date/time/timedelta, pathlib paths, UUID,
  dataclasses, numpy arrays and scalars bit for bit). Nothing is ever approximated: a value the
  tags cannot hold exactly (a subclass, a tz other than a fixed offset or zoneinfo, an object
  array...) is pickled instead.
- ``pickle``: always pickle.

Whatever JSON cannot hold faithfully is pickled (`kind == "pickle"`); whatever cannot even be
pickled is replaced by an ``unsaved`` descriptor naming its type, repr and the reason, so the
run still says what it returned. numpy is never imported here: a numpy object is recognised by
`type(x).__module__` and numpy taken from `sys.modules`, where it must already be.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any, Callable


SCHEMA_VALUE = "lfm-pack.value/1"
TAG = "$lfm"
FORMATS = ("json", "typed", "pickle")
#: numpy dtype kinds whose raw bytes round-trip (bool, int, uint, float, complex)
_RAW_KINDS = "biufc"


class Unencodable(Exception):
    """The value (or a part of it) has no exact JSON form in the requested format."""


class Encoded:
    """An encoded value: `kind` is "json", "pickle" or "unsaved"; `data` the bytes to write."""

    __slots__ = ("data", "kind", "reason", "type")

    def __init__(self, kind: str, data: bytes, type_name: str, reason: str = "") -> None:
        self.kind = kind
        self.data = data
        self.type = type_name
        self.reason = reason

    def meta(self) -> dict[str, Any]:
        """What the report and the event stream say about the value (never the value)."""
        out: dict[str, Any] = {"type": self.type, "encoding": self.kind, "bytes": len(self.data)}
        if self.reason:
            out["reason"] = self.reason
        return out


def type_name(value: Any) -> str:
    t = type(value)
    mod = getattr(t, "__module__", "") or ""
    qual = getattr(t, "__qualname__", t.__name__)
    return qual if mod == "builtins" else mod + "." + qual


# ------------------------------------------------------------------------------ encoding
def encode(value: Any, fmt: str) -> Encoded:
    """Encode `value` in `fmt` ("json", "typed" or "pickle"), falling back as documented."""
    import json

    name = type_name(value)
    reason = ""
    if fmt != "pickle":
        try:
            if fmt == "typed":
                text = json.dumps(to_typed(value, []), separators=(",", ":"))
            else:
                text = json.dumps(value, default=_plain_default)
            return Encoded("json", text.encode("utf-8"), name)
        except (Unencodable, TypeError, ValueError, RecursionError, OverflowError) as exc:
            reason = "not representable as JSON: %s" % (exc,)
    import pickle

    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return Encoded("pickle", data, name, reason)
    except Exception as exc:  # any failure of a user __reduce__ lands here
        why = "cannot be pickled: %s: %s" % (type(exc).__name__, exc)
    desc = unsaved_descriptor(value, name, why)
    return Encoded("unsaved", json.dumps(desc).encode("utf-8"), name, why)


def unsaved_descriptor(value: Any, name: str, reason: str) -> dict[str, Any]:
    try:
        text = repr(value)
    except Exception as exc:
        text = "<repr failed: %s>" % (exc,)
    if len(text) > 2000:
        text = text[:2000] + "..."
    return {TAG: "unsaved", "schema": SCHEMA_VALUE, "type": name, "repr": text, "reason": reason}


def file_descriptor(enc: Encoded, path: str) -> dict[str, Any]:
    """The small JSON printed on stdout when the value went to a file instead of stdout."""
    return {
        TAG: "file",
        "schema": SCHEMA_VALUE,
        "encoding": enc.kind,
        "type": enc.type,
        "path": path,
        "bytes": len(enc.data),
        "reason": enc.reason,
    }


def _numpy(value: Any) -> Any:
    """numpy's module when `value` is a numpy object (never imports it), else None."""
    mod = type(value).__module__
    if mod == "numpy" or mod.startswith("numpy."):
        return sys.modules.get("numpy")
    return None


_EXACT_STR_MODULES = ("decimal", "_decimal", "_pydecimal", "fractions", "uuid")


def _plain_default(x: Any) -> Any:
    """json.dumps(default=...) for the CLI's plain form: only types JSON does not know."""
    np = _numpy(x)
    if np is not None:
        if isinstance(x, np.ndarray):
            return x.tolist()
        if isinstance(x, np.generic):
            return x.item()
    if isinstance(x, (set, frozenset)):
        items = list(x)
        try:
            items.sort()
        except TypeError:
            pass
        return items
    if isinstance(x, complex):
        return {"real": x.real, "imag": x.imag}
    if isinstance(x, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(x)).decode("ascii")
    mod = type(x).__module__
    if mod == "datetime":
        import datetime as dt

        if isinstance(x, dt.timedelta):
            return x.total_seconds()
        if isinstance(x, (dt.date, dt.time)):
            return x.isoformat()
    if type(x).__name__ in ("Decimal", "Fraction", "UUID") and mod in _EXACT_STR_MODULES:
        return str(x)
    if "pathlib" in sys.modules and isinstance(x, sys.modules["pathlib"].PurePath):
        return str(x)
    fields = getattr(type(x), "__dataclass_fields__", None)
    if fields is not None and not isinstance(x, type):
        import dataclasses

        return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}
    if "enum" in sys.modules and isinstance(x, sys.modules["enum"].Enum):
        return x.value
    raise TypeError("%s is not JSON serializable" % type_name(x))


def to_typed(x: Any, path: list[int]) -> Any:
    """The tagged form of `x` (exact types only: a subclass raises Unencodable)."""
    t = type(x)
    if t is str or t is int or t is bool or x is None:
        return x
    if t is float:
        return x
    ident = id(x)
    if t is list or t is dict or t is tuple or t is set or t is frozenset:
        if ident in path:
            raise Unencodable("the value contains itself")
        path.append(ident)
        try:
            if t is list:
                return [to_typed(v, path) for v in x]
            if t is dict:
                if TAG not in x and all(type(k) is str for k in x):
                    return {k: to_typed(v, path) for k, v in x.items()}
                return {
                    TAG: "dict",
                    "v": [[to_typed(k, path), to_typed(v, path)] for k, v in x.items()],
                }
            return {TAG: t.__name__, "v": [to_typed(v, path) for v in x]}
        finally:
            path.pop()
    enc = _typed_scalar(x, t)
    if enc is not None:
        return enc
    fields = getattr(t, "__dataclass_fields__", None)
    if fields is not None and not isinstance(x, type):
        return _typed_dataclass(x, t, path)
    raise Unencodable("%s has no exact JSON form" % type_name(x))


def _typed_scalar(x: Any, t: type) -> dict[str, Any] | None:
    """Tags of the non-container types (None when `t` is none of them)."""
    if t is bytes or t is bytearray:
        import base64

        return {TAG: t.__name__, "v": base64.b64encode(x).decode("ascii")}
    if t is complex:
        return {TAG: "complex", "v": [x.real, x.imag]}
    mod = t.__module__
    if mod == "datetime":
        return _typed_datetime(x, t)
    if mod in ("decimal", "_decimal") and t.__name__ == "Decimal":
        return {TAG: "decimal", "v": str(x)}
    if mod == "fractions" and t.__name__ == "Fraction":
        return {TAG: "fraction", "v": [x.numerator, x.denominator]}
    if mod == "uuid" and t.__name__ == "UUID":
        return {TAG: "uuid", "v": str(x)}
    if (mod == "pathlib" or mod.startswith("pathlib.")) and t.__name__ in _PATH_TYPES:
        return {TAG: "path", "cls": t.__name__, "v": str(x)}
    np = _numpy(x)
    if np is not None:
        if t is np.ndarray:
            return _typed_array(np, x, "ndarray")
        if isinstance(x, np.generic) and x.dtype.kind in _RAW_KINDS:
            return _typed_array(np, x, "npscalar")
    return None


_PATH_TYPES = ("PurePath", "PurePosixPath", "PureWindowsPath", "Path", "PosixPath", "WindowsPath")


def _typed_datetime(x: Any, t: type) -> dict[str, Any] | None:
    import datetime as dt

    if t is dt.timedelta:
        return {TAG: "timedelta", "v": [x.days, x.seconds, x.microseconds]}
    if t is dt.date:
        return {TAG: "date", "v": x.isoformat()}
    if t is not dt.datetime and t is not dt.time:
        return None
    out: dict[str, Any] = {TAG: t.__name__, "v": x.isoformat()}
    tz = x.tzinfo
    if tz is not None:
        if type(tz) is dt.timezone:
            offset = tz.utcoffset(None)
            if tz.tzname(None) != dt.timezone(offset).tzname(None):
                out["tzname"] = tz.tzname(None)  # a named fixed offset, e.g. timezone(h, "EST")
        elif type(tz).__module__ == "zoneinfo" and getattr(tz, "key", None):
            if t is dt.time:
                raise Unencodable("a time with a zoneinfo zone has no exact JSON form")
            out["v"] = x.replace(tzinfo=None).isoformat()
            out["zone"] = tz.key
        else:
            raise Unencodable("a %s tzinfo has no exact JSON form" % type_name(tz))
    if x.fold:
        out["fold"] = 1
    return out


def _typed_array(np: Any, x: Any, tag: str) -> dict[str, Any]:
    import base64

    kind = x.dtype.kind
    if tag == "ndarray" and kind == "U":
        return {TAG: tag, "dtype": x.dtype.str, "shape": list(x.shape), "v": x.tolist()}
    if kind not in _RAW_KINDS or x.dtype.fields is not None or x.dtype.subdtype is not None:
        raise Unencodable("a numpy array of dtype %s has no exact JSON form" % x.dtype)
    raw = np.ascontiguousarray(x).tobytes() if tag == "ndarray" else x.tobytes()
    out = {TAG: tag, "dtype": x.dtype.str, "b64": base64.b64encode(raw).decode("ascii")}
    if tag == "ndarray":
        out["shape"] = list(x.shape)
    return out


def _typed_dataclass(x: Any, t: type, path: list[int]) -> dict[str, Any]:
    import dataclasses

    qual = t.__qualname__
    if "<locals>" in qual or t.__module__ == "__main__":
        raise Unencodable("dataclass %s cannot be imported by name" % qual)
    names = [f.name for f in dataclasses.fields(x)]
    extra = set(getattr(x, "__dict__", {})) - set(names)
    if extra:
        raise Unencodable("%s has attributes besides its fields" % type_name(x))
    if id(x) in path:
        raise Unencodable("the value contains itself")
    path.append(id(x))
    try:
        values = {n: to_typed(getattr(x, n), path) for n in names}
    finally:
        path.pop()
    return {TAG: "dataclass", "cls": t.__module__ + ":" + qual, "v": values}


# ------------------------------------------------------------------------------ decoding
class UndecodedValue:
    """A value that could not be rebuilt here (its type is not importable) or was never saved.

    `data` holds the encoded bytes (None when the node could not pickle the value at all);
    `load()` tries again, e.g. after fixing `sys.path`.
    """

    def __init__(
        self, type_name: str, reason: str, data: bytes | None = None, text: str = ""
    ) -> None:
        self.type = type_name
        self.reason = reason
        self.data = data
        self.repr = text

    def load(self) -> Any:
        if self.data is None:
            raise ValueError("the node could not save this %s: %s" % (self.type, self.reason))
        return decode_bytes(self.data)

    def __repr__(self) -> str:
        return "<UndecodedValue %s: %s>" % (self.type, self.reason)


def decode_bytes(data: bytes) -> Any:
    """Decode what the node wrote with `encode` (typed JSON or pickle, told by the first byte)."""
    if data[:1] == b"\x80":
        import pickle

        return pickle.loads(data)
    import json

    return decode_typed(json.loads(data.decode("utf-8")))


def decode_typed(obj: Any) -> Any:
    t = type(obj)
    if t is list:
        return [decode_typed(v) for v in obj]
    if t is dict:
        tag = obj.get(TAG)
        if tag is None:
            return {k: decode_typed(v) for k, v in obj.items()}
        fn = _DECODERS.get(tag)
        if fn is None:
            raise ValueError("unknown value tag %r (a newer lfm-pack runtime?)" % (tag,))
        return fn(obj)
    return obj


def _dec_dict(obj: dict[str, Any]) -> Any:
    return {decode_typed(k): decode_typed(v) for k, v in obj["v"]}


def _dec_bytes(obj: dict[str, Any]) -> Any:
    import base64

    raw = base64.b64decode(obj["v"])
    return bytearray(raw) if obj[TAG] == "bytearray" else raw


def _dec_datetime(obj: dict[str, Any]) -> Any:
    import datetime as dt

    tag = obj[TAG]
    if tag == "timedelta":
        d, s, us = obj["v"]
        return dt.timedelta(days=d, seconds=s, microseconds=us)
    cls: Any = {"date": dt.date, "datetime": dt.datetime, "time": dt.time}[tag]
    value = cls.fromisoformat(obj["v"])
    if "tzname" in obj and value.tzinfo is not None:
        value = value.replace(tzinfo=dt.timezone(value.utcoffset(), obj["tzname"]))
    if "zone" in obj:
        import zoneinfo

        value = value.replace(tzinfo=zoneinfo.ZoneInfo(obj["zone"]))
    if obj.get("fold"):
        value = value.replace(fold=1)
    return value


def _dec_path(obj: dict[str, Any]) -> Any:
    import os
    import pathlib

    name = obj["cls"]
    if name in ("Path", "PosixPath", "WindowsPath"):
        native = "WindowsPath" if os.name == "nt" else "PosixPath"
        if name != native and name != "Path":
            name = "Pure" + name  # a concrete path of the other OS cannot exist here
    return getattr(pathlib, name)(obj["v"])


def _dec_simple(obj: dict[str, Any]) -> Any:
    tag = obj[TAG]
    if tag == "complex":
        return complex(obj["v"][0], obj["v"][1])
    if tag == "decimal":
        import decimal

        return decimal.Decimal(obj["v"])
    if tag == "fraction":
        import fractions

        return fractions.Fraction(obj["v"][0], obj["v"][1])
    import uuid

    return uuid.UUID(obj["v"])


def _dec_container(obj: dict[str, Any]) -> Any:
    items = [decode_typed(v) for v in obj["v"]]
    return {"tuple": tuple, "set": set, "frozenset": frozenset}[obj[TAG]](items)


def _dec_dataclass(obj: dict[str, Any]) -> Any:
    values = {k: decode_typed(v) for k, v in obj["v"].items()}
    mod_name, _, qual = obj["cls"].partition(":")
    try:
        import importlib

        cls: Any = importlib.import_module(mod_name)
        for part in qual.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):
        return values  # the class is not importable here: its fields (documented)
    if getattr(cls, "__dataclass_fields__", None) is None:
        return values
    inst = cls.__new__(cls)
    for k, v in values.items():
        object.__setattr__(inst, k, v)  # as pickle does: __init__ is not run again
    return inst


#: numpy dtype str (without byte order) -> struct code, for callers without numpy
_STRUCT = {
    "b1": "?",
    "i1": "b",
    "u1": "B",
    "i2": "h",
    "u2": "H",
    "i4": "i",
    "u4": "I",
    "i8": "q",
    "u8": "Q",
    "f2": "e",
    "f4": "f",
    "f8": "d",
    "c8": "f",
    "c16": "d",
}


def _dec_array(obj: dict[str, Any]) -> Any:
    np: Any = None
    try:
        import numpy

        np = numpy
    except ImportError:
        pass
    tag = obj[TAG]
    dtype = obj["dtype"]
    if "v" in obj:  # a str array, kept as nested lists
        return obj["v"] if np is None else np.array(obj["v"], dtype=dtype).reshape(obj["shape"])
    import base64

    raw = base64.b64decode(obj["b64"])
    if np is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(dtype))
        if tag == "npscalar":
            return arr[0]
        return arr.reshape(obj["shape"]).copy()  # writable, as the node's array was
    return _nested_without_numpy(raw, dtype, obj.get("shape", []), tag == "npscalar")


def _nested_without_numpy(raw: bytes, dtype: str, shape: list[int], scalar: bool) -> Any:
    """The array as nested Python lists (what `ndarray.tolist()` gives), numpy not needed."""
    import struct

    order = {"<": "<", ">": ">", "|": "=", "=": "="}[dtype[0]]
    code = _STRUCT.get(dtype[1:])
    if code is None:
        raise ValueError("numpy dtype %s cannot be decoded without numpy" % dtype)
    flat: list[Any] = [v[0] for v in struct.iter_unpack(order + code, raw)]
    if dtype[1] == "c":
        flat = [complex(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    if scalar:
        return flat[0]
    if not shape:
        return flat[0]
    for n in reversed(shape[1:]):
        flat = [flat[i : i + n] for i in range(0, len(flat), n)] if n else []
    return flat


def _dec_unsaved(obj: dict[str, Any]) -> Any:
    return UndecodedValue(str(obj.get("type")), str(obj.get("reason")), None, str(obj.get("repr")))


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": _dec_dict,
    "tuple": _dec_container,
    "set": _dec_container,
    "frozenset": _dec_container,
    "bytes": _dec_bytes,
    "bytearray": _dec_bytes,
    "complex": _dec_simple,
    "decimal": _dec_simple,
    "fraction": _dec_simple,
    "uuid": _dec_simple,
    "datetime": _dec_datetime,
    "date": _dec_datetime,
    "time": _dec_datetime,
    "timedelta": _dec_datetime,
    "path": _dec_path,
    "dataclass": _dec_dataclass,
    "ndarray": _dec_array,
    "npscalar": _dec_array,
    "unsaved": _dec_unsaved,
}


# ------------------------------------------------------------------------------ files
def _special(path: str) -> bool:
    """An existing non-regular file (/dev/stdout, a FIFO): written into, never renamed over."""
    import os
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` through a temp name beside it (removed on failure), then rename."""
    import os

    if _special(path):
        with open(path, "wb") as fh:
            fh.write(data)
        return
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def probe_writable(path: str) -> str | None:
    """Why a file cannot be written at `path` (None if it can): checked *before* the call."""
    import os

    full = os.path.abspath(path)
    if path.endswith(os.sep) or os.path.isdir(full):
        return "it is a directory"
    if _special(full):
        return None if os.access(full, os.W_OK) else "permission denied"
    d = os.path.dirname(full)
    if not os.path.isdir(d):
        return "directory %s does not exist" % d
    probe = os.path.join(d, ".%s.%d.probe" % (os.path.basename(full), os.getpid()))
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None
