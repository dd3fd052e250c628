"""Runs the target inside the forked task process, "as if the env were activated".

It sets the environment every child process inherits (env `bin/` first on PATH, node's
PYTHONPATH/PYTHONHOME/user site ignored, then PYTHONPATH = app dirs + runtime so that
multiprocessing-spawned Pythons find the user's code and the placeholders), makes sure the env's
site-packages are on sys.path (the launcher starts the monitor with normal flags so the forked
task and the Pythons it starts behave as in an activated env; `-S` is handled too), imports and
calls the target, and reports its own timings and outcome to the monitor over `events_fd`
as JSON lines. Arguments are decoded as JSON (else kept as strings), never evaluated.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .exitcodes import FUNCTION_ERROR

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


def _error_info(exc: BaseException, phase: str) -> dict[str, Any]:
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "") in _OURS:
        tb = tb.tb_next  # the user sees their frames, not ours
    return {
        "type": type(exc).__module__ + "." + type(exc).__qualname__
        if type(exc).__module__ not in ("builtins", "__main__")
        else type(exc).__qualname__,
        "message": str(exc),
        "phase": phase,
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


def _print_error(exc: BaseException) -> None:
    """The user's traceback on stderr (our own frames trimmed), as Python would print it."""
    sys.stderr.write(_error_info(exc, "")["traceback"])
    sys.stderr.flush()


def load_input(path: str, fmt: str) -> tuple[list[Any], dict[str, Any]]:
    """Read `{"args": [...], "kwargs": {...}}` (JSON, or pickle: trusted input only)."""
    if fmt == "pickle":
        import pickle

        with open(path, "rb") as fh:
            data = pickle.load(fh)
    else:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    if not isinstance(data, dict) or not set(data) <= {"args", "kwargs"}:
        raise ValueError('--input must hold an object {"args": [...], "kwargs": {...}}')
    args = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise ValueError("--input: args must be a list and kwargs an object")
    return list(args), dict(kwargs)


def write_output(result: Any, path: str | None, fmt: str) -> None:
    """Write the return value (JSON or pickle) atomically to `path`, or as JSON on stdout."""
    if path is None:
        text = json.dumps(result)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    tmp = "%s.tmp-%d" % (path, os.getpid())
    if fmt == "pickle":
        import pickle

        with open(tmp, "wb") as fh:
            pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        text = json.dumps(result)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    os.replace(tmp, path)


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


def invoke(
    fn: Any, args: Sequence[Any], kwargs: Mapping[str, Any], events: Events
) -> tuple[int | None, Any, float]:
    """Call the target once; shared by single-shot and warm mode so both report alike.

    Returns (None, value, start) when it returned; otherwise the `result` event is already sent
    and the first item is the exit code (a SystemExit's own code, or FUNCTION_ERROR).
    """
    t1 = time.time()
    try:
        return None, fn(*args, **kwargs), t1
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
        except (OSError, ValueError) as exc:
            sys.stderr.write("lfm: cannot read --input {}: {}\n".format(spec["input"], exc))
            events.emit("result", status="error", error=_error_info(exc, "input"))
            return FUNCTION_ERROR
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
        write_output(result, spec.get("output"), spec.get("output_format", "json"))
    except (TypeError, ValueError, OSError) as exc:
        msg = f"cannot write the return value ({type(result).__name__}): {exc}"
        hint = " (use --output FILE --output-format pickle for non-JSON values)"
        sys.stderr.write("lfm: " + msg + hint + "\n")
        info = _error_info(exc, "output")
        info["message"] = msg + hint
        events.emit("result", status="error", error=info, call_s=round(t2 - t1, 6))
        return FUNCTION_ERROR
    events.emit("result", status="ok", call_s=round(t2 - t1, 6), result_type=type(result).__name__)
    return 0
