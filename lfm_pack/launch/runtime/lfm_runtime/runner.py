"""Runs the target inside the forked task process, "as if the env were activated".

It sets the environment every child process inherits (env `bin/` first on PATH, node's
PYTHONPATH/PYTHONHOME/user site ignored, then PYTHONPATH = app dirs + runtime so that
multiprocessing-spawned Pythons find the user's code and the placeholders), makes sure the env's
site-packages are on sys.path (the launcher starts the monitor with normal flags so the forked
task and the Pythons it starts behave as in an activated env; `-S` is handled too), imports and
calls the target, and reports its own timings and outcome to the monitor over `events_fd`
as marshal frames. Arguments are decoded as JSON (else kept as strings), never evaluated.

What a call gives back is settled here for both modes (`invoke`): a coroutine is run with
`asyncio.run`, a generator (or async generator) is consumed and its items returned as a list;
the value is then encoded by `result.encode` (the one encoder of single-shot and warm mode).
A raised exception travels as its traceback text plus a pickle of the exception object, so the
caller's Python API can raise the function's own type.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .exitcodes import FUNCTION_ERROR, OUTPUT, USAGE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any, Mapping, Sequence


_DROP = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "PYTHONSAFEPATH",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "__PYVENV_LAUNCHER__",
)


def activated_environ(
    env_root: str, app_dirs: list[str], runtime_dir: str, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a process running "inside" the unpacked env (pure function)."""
    env = dict(os.environ if base is None else base)
    for key in _DROP:
        env.pop(key, None)
    env["PYTHONNOUSERSITE"] = "1"
    env["PATH"] = os.path.join(env_root, "bin") + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["PYTHONPATH"] = os.pathsep.join([*list(app_dirs), runtime_dir])
    env["LFM_ENV"] = env_root
    if os.path.isdir(os.path.join(env_root, "conda-meta")):
        env["CONDA_PREFIX"] = env_root
    else:
        env["VIRTUAL_ENV"] = env_root
    return env


def decode_arg(text: str) -> Any:
    """`42` -> 42, `{"a": 1}` -> dict, `true` -> True, `hello` -> "hello" (JSON else string)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class Events:
    """Event channel to the monitor (a pipe): length-prefixed marshal frames of plain dicts.

    marshal is built in, so the monitor parses events without importing json (~7 ms of
    start-up on every run); both ends are the same interpreter. Dropped if the monitor is gone.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def emit(self, ev: str, **fields: Any) -> None:
        if self.fd < 0:
            return
        import marshal

        payload = dict(fields, ev=ev, t=time.time())
        try:
            body = marshal.dumps(payload)
        except ValueError:
            body = marshal.dumps(
                {
                    k: v if isinstance(v, (int, float, str, type(None))) else str(v)
                    for k, v in payload.items()
                }
            )
        data = len(body).to_bytes(4, "big") + body
        try:
            while data:
                n = os.write(self.fd, data)
                data = data[n:]
        except OSError:
            self.fd = -1


_OURS = (
    "lfm_runtime.runner",
    "lfm_runtime.serve",
    "lfm_pack.launch.runtime.lfm_runtime.runner",
    "lfm_pack.launch.runtime.lfm_runtime.serve",
    "runpy",
)
#: an exception pickle larger than this is not carried (its type, message and traceback are)
MAX_EXCEPTION_PICKLE = 256 * 1024


def _ours(name: str) -> bool:
    return name in _OURS or name == "asyncio" or name.startswith("asyncio.")


def _error_info(exc: BaseException, phase: str) -> dict[str, Any]:
    import traceback

    tb = exc.__traceback__
    while tb is not None and _ours(tb.tb_frame.f_globals.get("__name__", "")):
        tb = tb.tb_next  # the user sees their frames, not ours (nor asyncio's)
    info = {
        "type": type(exc).__module__ + "." + type(exc).__qualname__
        if type(exc).__module__ not in ("builtins", "__main__")
        else type(exc).__qualname__,
        "message": _safe_str(exc),
        "phase": phase,
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }
    info.update(exception_payload(exc))
    return info


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return "<%s with an unprintable message>" % type(exc).__name__


def exception_payload(exc: BaseException) -> dict[str, Any]:
    """What lets the caller raise the function's own exception type (see lfm_pack/remote.py).

    The exception is pickled *and unpickled again here*: an exception class whose `__init__`
    does not match its `args` (a classic) fails now, on the node, and the caller falls back
    to rebuilding it from `module`/`qualname`/`args` instead of failing to load it there.
    """
    out: dict[str, Any] = {"module": type(exc).__module__, "qualname": type(exc).__qualname__}
    args = []
    for a in exc.args:
        args.append(a if a is None or type(a) in (str, int, float, bool) else repr(a))
    out["args"] = args
    attrs = {}
    for k, v in getattr(exc, "__dict__", {}).items():
        if isinstance(k, str) and (v is None or type(v) in (str, int, float, bool)):
            attrs[k] = v
    if attrs:
        out["attrs"] = attrs
    try:
        import base64
        import pickle

        data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(data)
        if len(data) <= MAX_EXCEPTION_PICKLE:
            out["pickle"] = base64.b64encode(data).decode("ascii")
        else:
            out["pickle_error"] = "the pickled exception is %d bytes (limit %d)" % (
                len(data),
                MAX_EXCEPTION_PICKLE,
            )
    except Exception as err:  # any failure of a user __reduce__/__init__
        out["pickle_error"] = "%s: %s" % (type(err).__name__, _safe_str(err))
    return out


def _print_error(exc: BaseException) -> None:
    """The user's traceback on stderr (our own frames trimmed), as Python would print it."""
    sys.stderr.write(_error_info(exc, "")["traceback"])
    sys.stderr.flush()


class InputError(ValueError):
    """--input cannot be used: missing, unreadable, malformed (exit 85, before the call)."""


def load_input(path: str, fmt: str) -> tuple[list[Any], dict[str, Any]]:
    """Read `{"args": [...], "kwargs": {...}}` (JSON, or pickle: trusted input only).

    `path` "-" is standard input. Every failure is an InputError with a one-line reason.
    """
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        raise InputError("cannot read --input %s: %s" % (where, exc.strerror or exc)) from None
    if not raw.strip():
        raise InputError('--input %s is empty (expected {"args": [...], "kwargs": {...}})' % where)
    try:
        if fmt == "pickle":
            import pickle

            data = pickle.loads(raw)
        else:
            data = json.loads(raw.decode("utf-8"))
    except Exception as exc:  # JSON, UTF-8, unpickling (missing module...) alike
        what = "pickle" if fmt == "pickle" else "JSON"
        raise InputError(
            "--input %s is not valid %s: %s: %s" % (where, what, type(exc).__name__, exc)
        ) from None
    if not isinstance(data, dict) or not set(data) <= {"args", "kwargs"}:
        raise InputError('--input %s must hold an object {"args": [...], "kwargs": {...}}' % where)
    args = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise InputError("--input %s: args must be a list and kwargs an object" % where)
    return list(args), dict(kwargs)


class OutputError(OSError):
    """The value could not be written where it must go (exit 87, never 81)."""


def write_value(result: Any, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Encode the return value and put it where it belongs; what the report says about it.

    JSON goes to `--output` or as one line on stdout. A value JSON cannot hold goes, pickled, to
    `--output` or to `spec["value_path"]` (beside the report, else in the working directory),
    and a descriptor naming the file is printed on stdout. Writes are atomic.
    """
    from . import result as rv

    fmt = spec.get("output_format") or "json"
    out = spec.get("output")
    enc = rv.encode(result, fmt)
    meta = enc.meta()
    if enc.kind == "pickle":
        path = os.path.abspath(out or spec.get("value_path") or "value.pkl")
        _write_file(path, enc.data)
        meta["path"] = path
        if out is None or fmt == "json":
            _stdout(json.dumps(rv.file_descriptor(enc, path)))
            sys.stderr.write(
                "lfm: the return value (%s) is %s; pickled to %s\n"
                % (enc.type, enc.reason or "pickled as asked", path)
            )
        return meta
    if enc.kind == "unsaved":
        sys.stderr.write("lfm: warning: the return value (%s) %s\n" % (enc.type, enc.reason))
    if out is None:
        _stdout(enc.data.decode("utf-8"))
    else:
        _write_file(out, enc.data + b"\n")
        meta["path"] = os.path.abspath(out)
    return meta


def _write_file(path: str, data: bytes) -> None:
    from .result import write_atomic

    try:
        write_atomic(path, data)
    except OSError as exc:
        raise OutputError(
            "cannot write the return value to %s: %s" % (path, exc.strerror or exc)
        ) from None


def _stdout(text: str) -> None:
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        raise OutputError("cannot write the return value to stdout: %s" % (exc,)) from None


def _resolve(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _exit_code_of(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(str(code) + "\n")
    return 1


def complete(value: Any) -> Any:
    """What the call returned, finished: a coroutine is awaited, a generator consumed.

    `async def` targets are run with `asyncio.run` (a fresh event loop per call); generators
    and async generators are exhausted and their items returned as a list (docs/launcher.md).
    """
    import types

    if isinstance(value, types.CoroutineType):
        import asyncio

        return asyncio.run(value)
    if isinstance(value, types.GeneratorType):
        return list(value)
    if isinstance(value, types.AsyncGeneratorType):
        import asyncio

        return asyncio.run(_drain(value))
    return value


async def _drain(agen: Any) -> list[Any]:
    return [item async for item in agen]


def invoke(
    fn: Any, args: Sequence[Any], kwargs: Mapping[str, Any], events: Events
) -> tuple[int | None, Any, float]:
    """Call the target once; shared by single-shot and warm mode so both report alike.

    Returns (None, value, start) when it returned; otherwise the `result` event is already sent
    and the first item is the exit code (a SystemExit's own code, or FUNCTION_ERROR).
    """
    t1 = time.time()
    try:
        return None, complete(fn(*args, **kwargs)), t1
    except SystemExit as exc:
        code = _exit_code_of(exc)
        events.emit(
            "result",
            status="ok" if code == 0 else "error",
            exit_code=code,
            call_s=round(time.time() - t1, 6),
        )
        return code, None, t1
    except BaseException as exc:
        _print_error(exc)
        events.emit(
            "result",
            status="error",
            error=_error_info(exc, "call"),
            call_s=round(time.time() - t1, 6),
        )
        return FUNCTION_ERROR, None, t1


def run_target(spec: dict[str, Any], events_fd: int) -> int:
    """Run one target in this (forked) process; returns the process exit code."""
    events = Events(events_fd)
    env_root = spec["env_root"]
    runtime_dir = spec["runtime_dir"]
    target = spec["target"]
    app_dirs = [os.path.join(env_root, p) for p in spec.get("app_paths", [])]
    # Compute the activated environment from the node's one *before* clearing, else the
    # task loses HOME, SLURM_*, OMP_NUM_THREADS, TMPDIR... (only the env's own keys survive).
    activated = activated_environ(env_root, app_dirs, runtime_dir, spec.get("base_env"))
    os.environ.clear()
    os.environ.update(activated)
    t0 = time.time()
    events.emit("start")
    if sys.flags.no_site:
        import site

        site.main()  # the env's site-packages and .pth files, paid once, in the task only
    for d in reversed(app_dirs):
        sys.path.insert(0, d)
    if runtime_dir not in sys.path:
        sys.path.append(runtime_dir)
    args: list[Any] = list(spec.get("args", []))
    kwargs: dict[str, Any] = {}
    mode = spec["mode"]
    qualname = target.get("qualname")
    if mode == "function" and spec.get("input"):
        try:
            args, kwargs = load_input(spec["input"], spec.get("input_format", "json"))
        except InputError as exc:  # before the call: a usage error, never "function raised"
            sys.stderr.write("lfm: error: %s\n" % (exc,))
            events.emit(
                "result",
                status="usage",
                error={"type": "InputError", "phase": "input", "message": str(exc)},
            )
            return USAGE
    elif mode == "function":
        args = [decode_arg(a) for a in args]

    if mode == "script" or qualname is None:
        path = os.path.join(env_root, target["app_path"]) if target.get("app_path") else None
        import runpy

        sys.argv = [path or target.get("module") or "lfm"] + [str(a) for a in spec.get("args", [])]
        events.emit("imported", import_s=round(time.time() - t0, 6))
        t1 = time.time()
        code = 0
        try:
            if path is not None and target.get("kind", "file") == "file":
                sys.path.insert(0, os.path.dirname(path))
                runpy.run_path(path, run_name="__main__")
            else:
                runpy.run_module(target["module"], run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = _exit_code_of(exc)
        except BaseException as exc:
            _print_error(exc)
            events.emit(
                "result",
                status="error",
                error=_error_info(exc, "call"),
                call_s=round(time.time() - t1, 6),
            )
            return 1
        events.emit(
            "result",
            status="ok" if code == 0 else "error",
            exit_code=code,
            call_s=round(time.time() - t1, 6),
        )
        return code

    import importlib

    sys.argv = [os.path.join(env_root, target.get("app_path") or "")] + [
        str(a) for a in spec.get("args", [])
    ]
    try:
        module = importlib.import_module(target["module"])
        fn = _resolve(module, qualname)
    except BaseException as exc:
        _print_error(exc)
        events.emit("result", status="error", error=_error_info(exc, "import"))
        return FUNCTION_ERROR
    events.emit("imported", import_s=round(time.time() - t0, 6))
    failed, result, t1 = invoke(fn, args, kwargs, events)
    if failed is not None:
        return failed
    t2 = time.time()
    try:
        meta = write_value(result, spec)
    except OutputError as exc:  # the function returned: its value is lost, not its fault
        sys.stderr.write("lfm: error: %s\n" % (exc,))
        events.emit(
            "result",
            status="infrastructure",
            error={"type": "OutputError", "phase": "output", "message": str(exc)},
            call_s=round(t2 - t1, 6),
        )
        return OUTPUT
    events.emit(
        "result", status="ok", call_s=round(t2 - t1, 6), result_type=meta["type"], value=meta
    )
    return 0
