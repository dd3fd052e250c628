"""The Python API for notebooks and workflow code: analyze, pack, then run or hand off a function.

`lfm_pack.analyze(fn)` and `lfm_pack.pack(fn)` run the same stages as the CLI; a live function
object is turned into the `file.py:qualname` (or `pkg.mod:qualname`) target the CLI would take,
so what is shipped is the function's *file*, never a pickle of the object. A `Packed` knows its
launcher, runs it locally (`run`, through the real launcher and monitor) and renders the argv
for any other executor (`command`); `lfm_pack.scale.dask` / `.parsl` use exactly that.

`analyze` and `pack` are also the names of the stage packages; `lfm_pack/_callable.py` makes
those packages callable as the functions here.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lfm_pack.errors import InputFileError, LfmError, PackError, TargetError
from lfm_pack.paths import user_cache_dir

if TYPE_CHECKING:
    from lfm_pack.models import Analysis
    from lfm_pack.pack.build import PackResult

Serializer = Literal["json", "pickle"]

#: Keyword names `Packed.run` keeps for itself; pass a function kwarg of these names via `call`.
RUN_OPTIONS = (
    "memory",
    "wall_time",
    "cores",
    "disk",
    "cache_dir",
    "report",
    "serializer",
    "check",
    "env",
)

# Launcher exit codes (lfm_runtime/exitcodes.py; docs/launcher.md).
EXIT_FUNCTION = 81
EXIT_LIMIT = 82


# ----------------------------------------------------------------------------------------------
# errors of a run


class RunError(LfmError):
    """A packed function did not return a value; `.result` holds everything that came back.

    `exit_code` is the launcher's own exit code (81 function raised, 82 limit, 83 infrastructure,
    84 preflight, 85 usage, 128+N signal), so a caller can branch on it like a scheduler would.
    """

    def __init__(self, message: str, result: Result, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.result = result
        self.exit_code = result.exit_code
        self.report = result.report

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask and Parsl pickle exceptions back to the client: rebuild from the real fields.
        return (self.__class__, (self.message, self.result, self.hint))


class RemoteError(RunError):
    """The packed function raised; `remote_type` and `remote_traceback` are the remote ones.

    `Result.check()` raises the function's *own* exception type when it can be imported here:
    an instance of a class deriving from that type and from RemoteError (see lfm_pack/remote.py),
    so `except ValueError:` and `except RemoteError:` both catch it, `str()` is the original
    message and `__cause__` holds the node's traceback. A plain RemoteError (message plus the
    remote traceback) is the fallback when the type is not importable on this side.
    """

    remote_type: str
    remote_traceback: str

    def __init__(self, message: str, result: Result, hint: str | None = None) -> None:
        super().__init__(message, result, hint)
        _init_remote(self, message, result, hint)

    def __str__(self) -> str:
        return f"{self.message}\n\nremote traceback:\n{self.remote_traceback}".rstrip()

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt on the receiving side (a Dask/Parsl client), where the type may be importable.
        return (_remote_error, (self.message, self.result, self.hint))


def _init_remote(exc: BaseException, message: str, result: Result, hint: str | None) -> None:
    """RemoteError's fields, set without touching `args` (a rebuilt exception keeps its own)."""
    err = result.error or {}
    fields = {
        "message": message,
        "hint": hint,
        "result": result,
        "exit_code": result.exit_code,
        "report": result.report,
        "remote_type": str(err.get("type") or "Exception"),
        "remote_traceback": str(err.get("traceback") or result.stderr),
    }
    exc.__dict__.update(fields)


def _remote_error(message: str, result: Result, hint: str | None) -> RemoteError:
    """The exception for a run whose function raised: its own type if importable, else plain."""
    from lfm_pack.remote import rebuild

    rebuilt = rebuild(
        result.error or {}, RemoteError, lambda exc: _init_remote(exc, message, result, hint)
    )
    if isinstance(rebuilt, RemoteError):
        return rebuilt
    plain = RemoteError(message, result, hint)
    if rebuilt is not None:  # its type cannot be derived from: keep it as the cause
        plain.__cause__ = rebuilt
    return plain


class LimitExceeded(RunError):
    """A resource limit (memory, wall time, disk) ended the run, or the kernel OOM killer did."""


class TaskCrashed(RunError):
    """The function's process died of its own fatal signal (SIGSEGV, SIGBUS, SIGABRT...).

    Exit code 128+N; the report says `status: crashed`, `ended_by: task`.
    """


class LaunchError(RunError):
    """The launcher could not run the function (archive, cache, preflight, usage, signal)."""


# ----------------------------------------------------------------------------------------------
# the outcome of one run


@dataclass(frozen=True)
class Result:
    """What one launcher run gave back: the value, the exit code and the parsed report.

    `value` is the function's return value with its own type (the typed encoding of
    lfm_runtime/result.py, or a pickle). A value whose type cannot be imported here is an
    `UndecodedValue` (`.load()` tries again); the encoded bytes travel with the Result when it
    is pickled (Dask, Parsl), so the receiving side decodes them again with its own modules.
    """

    value: Any
    exit_code: int
    report: Mapping[str, Any] | None = field(default=None, repr=False)
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)
    report_path: str | None = None
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    def __reduce__(self) -> tuple[Any, ...]:
        value = None if self.encoded is not None else self.value
        return (
            _result_from_wire,
            (
                value,
                self.exit_code,
                self.report,
                self.stdout,
                self.stderr,
                self.report_path,
                self.encoded,
            ),
        )

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def status(self) -> str:
        """The report's status class (ok, error, limit, signal, infrastructure)."""
        if self.report and self.report.get("status"):
            return str(self.report["status"])
        return "ok" if self.ok else "error"

    @property
    def error(self) -> Mapping[str, Any] | None:
        return (self.report or {}).get("error") or None

    @property
    def cache_hit(self) -> bool | None:
        """Whether the env was already unpacked on this node (None if the run never got there)."""
        cache = (self.report or {}).get("cache") or {}
        hit = cache.get("hit")
        return None if hit is None else bool(hit)

    @property
    def host(self) -> str | None:
        host = (self.report or {}).get("host")
        return None if host is None else str(host)

    def check(self) -> Result:
        """Return self when the run succeeded, else raise the matching RunError subclass."""
        if self.ok:
            return self
        err = self.error or {}
        msg = str(err.get("message") or "").strip()
        if self.exit_code == EXIT_FUNCTION:
            kind = str(err.get("type") or "Exception")
            raise _remote_error(
                f"the packed function raised {kind}: {msg}" if msg else f"raised {kind}",
                self,
                "see .remote_traceback (the traceback as it happened on the node)",
            )
        if self.status == "crashed":
            raise TaskCrashed(
                msg or f"the task crashed (exit code {self.exit_code})",
                self,
                hint="a fault in native code (or os.abort()); see the job's stderr and the report",
            )
        if self.exit_code == EXIT_LIMIT:
            raise LimitExceeded(
                msg or "a resource limit was exceeded",
                self,
                hint="raise the limit, or size it from reports with `lfm-pack suggest`",
            )
        last = (self.stderr.strip().splitlines() or [""])[-1]
        raise LaunchError(
            f"the launcher failed with exit code {self.exit_code}: {msg or last or self.status}",
            self,
            hint="see docs/launcher.md for the exit code table",
        )


def _result_from_wire(
    value: Any,
    exit_code: int,
    report: Mapping[str, Any] | None,
    stdout: str,
    stderr: str,
    report_path: str | None,
    encoded: bytes | None,
) -> Result:
    if encoded is not None:
        value = decode_value(encoded)
    return Result(value, exit_code, report, stdout, stderr, report_path, encoded)


def decode_value(data: bytes) -> Any:
    """The value the node encoded (typed JSON or pickle), or an UndecodedValue placeholder."""
    from lfm_pack.launch.runtime.lfm_runtime.result import UndecodedValue, decode_bytes

    try:
        return decode_bytes(data)
    except Exception as exc:  # e.g. the pickle names a module missing here
        return UndecodedValue(_pickled_type(data), f"{type(exc).__name__}: {exc}", data)


def _pickled_type(data: bytes) -> str:
    """A best-effort type name for an undecodable pickle: its first global (module.name)."""
    import pickletools

    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name == "GLOBAL" and isinstance(arg, str):
                return arg.replace(" ", ".")
            if "UNICODE" in op.name and isinstance(arg, str):
                strings.append(arg)
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
    except Exception:  # a truncated or foreign pickle
        pass
    return "pickled value"


# ----------------------------------------------------------------------------------------------
# live functions -> targets


def _site_dirs() -> tuple[str, ...]:
    """Directories whose modules are installed distributions (module targets, not files)."""
    import site
    import sysconfig

    dirs: list[str] = []
    if hasattr(site, "getsitepackages"):  # some embedded/virtualenv builds lack it
        dirs += site.getsitepackages()
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.append(user)
    paths = sysconfig.get_paths()
    dirs += [paths[k] for k in ("purelib", "platlib", "stdlib", "platstdlib") if k in paths]
    return tuple(os.path.realpath(d) for d in dict.fromkeys(dirs))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _resolve(obj: Any, qualname: str) -> Any:
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def target_of(fn: Callable[..., Any]) -> str:
    """The CLI target (`file.py:qualname`, relative to the cwd when inside it, else absolute,
    or `pkg.mod:qualname` for installed code) of a live function.

    The pack runs the function from its source file, so it must be a module-level function (or
    a class's static/class method) that can be found again by module and qualified name.
    """
    obj: Any = fn
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    if inspect.ismethod(obj) and not inspect.isclass(obj.__self__):
        raise TargetError(
            f"{obj.__qualname__} is a method bound to an instance; the pack cannot carry `self`",
            hint="pack a module-level function (or a staticmethod/classmethod) that takes JSON args",
        )
    inner = inspect.unwrap(obj.__func__ if inspect.ismethod(obj) else obj)
    if not inspect.isfunction(inner):
        raise TargetError(
            f"{fn!r} is not a Python function defined in a source file",
            hint="pass a function defined with `def` in a .py file, or a 'file.py:func' string",
        )
    name = getattr(obj, "__name__", "")
    qualname = getattr(obj, "__qualname__", name)
    modname = getattr(obj, "__module__", None)
    if name == "<lambda>":
        raise TargetError(
            "a lambda cannot be packed: it has no name to import it by on the node",
            hint="define it with `def name(...)` at module level in a .py file",
        )
    if "<locals>" in qualname:
        raise TargetError(
            f"{qualname} is defined inside another function; the node cannot import it",
            hint="move it to module level in a .py file",
        )
    module = sys.modules.get(modname or "")
    if module is None:
        raise TargetError(
            f"{qualname}: its module {modname!r} is not imported here",
            hint="pass a 'file.py:func' string instead",
        )
    try:
        found = _resolve(module, qualname)
    except AttributeError:
        found = None
    same = found is obj or (inspect.ismethod(found) and inspect.ismethod(obj) and found == obj)
    if not same:
        raise TargetError(
            f"{modname}.{qualname} is not this function (redefined, or a decorator without "
            "functools.wraps?)",
            hint="pass the function by its 'file.py:func' string",
        )
    source = getattr(module, "__file__", None)
    if source and source.endswith((".pyc", ".pyo")):
        source = inspect.getsourcefile(module)
    interactive_hint = (
        "save the function in a .py file and import it (`from mymod import func`), then pack it"
    )
    if not source or not source.endswith(".py") or not os.path.isfile(source):
        raise TargetError(
            f"{qualname} was defined interactively (no .py file behind module {modname!r})",
            hint=interactive_hint,
        )
    if re.search(r"ipykernel_\d+|<ipython-input", source):
        raise TargetError(
            f"{qualname} was defined in a notebook cell ({source})", hint=interactive_hint
        )
    path = os.path.realpath(source)
    if modname != "__main__" and any(_under(path, d) for d in _site_dirs()):
        return f"{modname}:{qualname}"
    here = os.path.realpath(os.getcwd())
    if _under(path, here):
        # What the CLI user would type from here: same raw target -> same lock and env key,
        # so `lfm_pack.pack(fn)` and `lfm-pack pack job.py:fn` share packs and node caches.
        return f"{os.path.relpath(path, here)}:{qualname}"
    return f"{path}:{qualname}"


def _raw_targets(target: Any) -> tuple[tuple[str, ...], bool]:
    """(raw CLI targets, whether any came from a live function)."""
    items = list(target) if isinstance(target, list | tuple) else [target]
    if not items:
        raise TargetError("no target given", hint="e.g. lfm_pack.analyze(my_function)")
    raws: list[str] = []
    live = False
    for item in items:
        if isinstance(item, str | os.PathLike):
            raws.append(os.fspath(item))
        elif callable(item):
            raws.append(target_of(item))
            live = True
        else:
            raise TargetError(
                f"cannot analyze {item!r}",
                hint="give a function, a 'file.py:func' string, or a list of them",
            )
    return tuple(raws), live


def analyze(
    target: Any,
    *,
    python: str | None = None,
    prefix: str | None = None,
    cwd: str | None = None,
    source_roots: Sequence[str] = (),
) -> Analysis:
    """Analyze a function (object or 'file.py:func' / 'pkg.mod:func' string, or a list of them).

    For a live function the environment is the interpreter running this code (the one that
    imported it), unless `python`/`prefix` say otherwise; strings follow the CLI's default.
    `source_roots` are directories to import local modules from (the CLI's --source-root).
    """
    from lfm_pack.analyze.pipeline import run_analysis

    raws, live = _raw_targets(target)
    if live and python is None and prefix is None:
        python = sys.executable
    return run_analysis(raws, python=python, prefix=prefix, cwd=cwd, source_roots=source_roots)


# ----------------------------------------------------------------------------------------------
# packing


def default_pack_dir() -> Path:
    """Where `pack()` puts packs without an outdir: $LFM_PACK_DIR, else the user cache."""
    env = os.environ.get("LFM_PACK_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir("packs")


def pack(
    target: Any,
    outdir: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    compression: Literal["gzip", "zstd", "none"] = "gzip",
    level: int | None = None,
    verify: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extra_files: Sequence[str] = (),
    strip: Sequence[str] = (),
    compile: bool = False,
    editable_as_source: bool = False,
    allow_unrelocatable: bool = False,
    python: str | None = None,
    prefix: str | None = None,
    skip_optional: bool = False,
    source_roots: Sequence[str] = (),
) -> Packed:
    """Pack a function (object, target string, list, or an `Analysis`) into archive + launcher.

    Without `outdir` the pack goes to `default_pack_dir()/<name>-<env key>/`, and an existing
    complete pack there is returned as is: re-running a notebook cell costs one analysis, not a
    rebuild. The keyword options mirror `lfm-pack pack`.
    """
    from lfm_pack.models import Analysis
    from lfm_pack.pack.build import PackRequest, build_pack
    from lfm_pack.pack.naming import checked_name, default_name
    from lfm_pack.pack.select import STRIP_CHOICES, Options

    analysis = (
        target
        if isinstance(target, Analysis)
        else analyze(target, python=python, prefix=prefix, source_roots=source_roots)
    )
    bad = sorted(set(strip) - set(STRIP_CHOICES))
    if bad:
        raise PackError(
            f"strip: {', '.join(bad)} not one of {', '.join(STRIP_CHOICES)}",
            hint="e.g. strip=('tests', 'docs')",
        )
    opts = Options(
        include=tuple(include),
        exclude=tuple(exclude),
        strip=frozenset(strip),
        extra_files=tuple(extra_files),
        editable_as_source=editable_as_source,
        allow_unrelocatable=allow_unrelocatable,
        compile=compile,
        skip_optional=skip_optional,
    )
    pack_name = checked_name(name) if name else default_name(analysis)
    if outdir is None:
        from lfm_pack.analyze.pipeline import for_pack
        from lfm_pack.pack import manifest

        shipped = for_pack(analysis, opts.include, opts.exclude, opts.skip_optional)
        key = manifest.env_key(shipped, opts, compression, level)
        out = default_pack_dir() / f"{pack_name}-{key[:16]}"
        launcher = out / f"{pack_name}-run"
        if launcher.is_file():
            done = load(launcher)
            if done.env_key == key and Path(done.archive).is_file():
                return done
    else:
        out = Path(outdir)
    req = PackRequest(
        analysis=analysis,
        outdir=str(out),
        name=pack_name,
        compression=compression,
        level=level,
        options=opts,
        verify=verify,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        threads=threads,
    )
    res = build_pack(req)
    return Packed(
        name=res.name,
        archive=res.archive,
        launcher=res.launcher,
        lock=res.lock,
        env_key=res.env_key,
        build=res,
    )


_LAUNCHER_VAR = re.compile(r"^(LFM_NAME|LFM_ARCHIVE_NAME|LFM_ENV_KEY)='([^'\n]*)'$", re.M)


def load(launcher: str | os.PathLike[str], archive: str | os.PathLike[str] | None = None) -> Packed:
    """A `Packed` for an existing `<name>-run` (e.g. one staged to a shared filesystem)."""
    path = Path(launcher).resolve()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputFileError(
            f"{launcher}: cannot read the launcher ({exc.strerror})",
            hint="give the <name>-run file written by lfm-pack pack",
        ) from None
    found = dict(_LAUNCHER_VAR.findall(text))
    if set(found) != {"LFM_NAME", "LFM_ARCHIVE_NAME", "LFM_ENV_KEY"}:
        raise InputFileError(
            f"{launcher}: not an lfm-pack launcher", hint="give the <name>-run file of a pack"
        )
    name = found["LFM_NAME"]
    lock = path.parent / f"{name}.lock.json"
    return Packed(
        name=name,
        archive=str(
            Path(archive).resolve() if archive else path.parent / found["LFM_ARCHIVE_NAME"]
        ),
        launcher=str(path),
        lock=str(lock) if lock.is_file() else None,
        env_key=found["LFM_ENV_KEY"],
    )


# ----------------------------------------------------------------------------------------------
# a pack, runnable


def _report_file(
    report: str | os.PathLike[str] | None, name: str, scratch: str
) -> tuple[str, bool]:
    """(report path, keep it): a file, or a unique file inside a directory, or a scratch one."""
    if report is None:
        rdir = os.environ.get("LFM_REPORT_DIR")
        if not rdir:
            return os.path.join(scratch, "report.json"), False
        report = rdir + os.sep
    text = os.fspath(report)
    if text.endswith(os.sep) or os.path.isdir(text):
        os.makedirs(text, exist_ok=True)
        import socket

        unique = f"{name}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.json"
        return os.path.join(text, unique), True
    return os.path.abspath(text), True


def _size_arg(value: int | str) -> str:
    """Bytes as an int, or the launcher's own SIZE syntax ('2G', '500M') as a string."""
    return str(value)


@dataclass(frozen=True)
class Packed:
    """One built pack: the archive, its launcher (`<name>-run`), the lock and the env key.

    Pickles as its five strings (see `__reduce__`) to Dask workers and Parsl executors. The paths
    must be valid where the launcher runs: on a cluster, `stage()` it to a shared directory.
    """

    name: str
    archive: str
    launcher: str
    lock: str | None
    env_key: str
    build: PackResult | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only the five strings travel (to Dask/Parsl workers): `build` is a local summary, and
        # unpickling it would import the packing code on every worker.
        return (Packed, (self.name, self.archive, self.launcher, self.lock, self.env_key))

    # -- argv ------------------------------------------------------------------------------

    def command(
        self,
        *args: Any,
        memory: int | str | None = None,
        wall_time: float | None = None,
        cores: int | None = None,
        disk: int | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        report: str | os.PathLike[str] | None = None,
        output: str | os.PathLike[str] | None = None,
        input: str | os.PathLike[str] | None = None,
        serializer: Serializer = "json",
        **kwargs: Any,
    ) -> list[str]:
        """The launcher argv calling the function with `args`/`kwargs`, for any executor.

        Positional args travel on the command line, each JSON-encoded (so the string "42" stays
        a string). A `report` ending in "/" (or an existing directory) is a report directory:
        the argv starts with `env LFM_REPORT_DIR=...` so each run writes its own report. With kwargs, or `serializer="pickle"`, they travel in an input file: give
        `input=PATH` and it is written now (atomically); the argv then reads it on the node.
        """
        prefix: list[str] = []
        if report is not None and (
            os.fspath(report).endswith(os.sep) or os.path.isdir(os.fspath(report))
        ):
            # A report directory: every run writes its own <name>-<host>-<pid>-<time>.json there.
            prefix = ["env", f"LFM_REPORT_DIR={os.path.abspath(os.fspath(report))}"]
            report = None
        opts = self._options(memory, wall_time, cores, disk, cache_dir, report)
        argv = [*prefix, self.launcher, *opts]
        if output is not None:
            argv += ["--output", os.fspath(output), "--output-format", serializer]
        if input is not None:
            write_input(input, args, kwargs, serializer)
            return [*argv, "--input", os.fspath(input), "--input-format", serializer]
        if kwargs or serializer == "pickle":
            raise LfmError(
                "keyword arguments (and pickled arguments) need an input file",
                hint="pass input='path/args.json' (written now, read by the launcher)",
            )
        try:
            encoded = [json.dumps(a) for a in args]
        except (TypeError, ValueError) as exc:
            raise LfmError(
                f"argument is not JSON-serializable: {exc}",
                hint="pass JSON-compatible values, or serializer='pickle' with input=PATH",
            ) from None
        return [*argv, "--", *encoded] if encoded else argv

    def _options(
        self,
        memory: int | str | None,
        wall_time: float | None,
        cores: int | None,
        disk: int | str | None,
        cache_dir: str | os.PathLike[str] | None,
        report: str | os.PathLike[str] | None,
    ) -> list[str]:
        out: list[str] = []
        if os.path.dirname(self.archive) != os.path.dirname(self.launcher):
            out += ["--archive", self.archive]
        if cache_dir is not None:
            out += ["--cache-dir", os.fspath(cache_dir)]
        if report is not None:
            out += ["--report", os.fspath(report)]
        if memory is not None:
            out += ["--memory", _size_arg(memory)]
        if wall_time is not None:
            out += ["--wall-time", f"{float(wall_time):g}"]
        if cores is not None:
            out += ["--cores", str(int(cores))]
        if disk is not None:
            out += ["--disk", _size_arg(disk)]
        return out

    # -- running locally -------------------------------------------------------------------

    def run(
        self,
        *args: Any,
        memory: int | str | None = None,
        wall_time: float | None = None,
        cores: int | None = None,
        disk: int | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        report: str | os.PathLike[str] | None = None,
        serializer: Serializer = "json",
        check: bool = True,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Result:
        """Call the packed function here, through the real launcher (unpack once, monitor).

        Keyword names in RUN_OPTIONS belong to the run; pass such a function kwarg via `call`.
        With `check` (default) a failed run raises RemoteError / LimitExceeded / LaunchError.
        """
        return self.call(
            args,
            kwargs,
            memory=memory,
            wall_time=wall_time,
            cores=cores,
            disk=disk,
            cache_dir=cache_dir,
            report=report,
            serializer=serializer,
            check=check,
            env=env,
        )

    def call(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        memory: int | str | None = None,
        wall_time: float | None = None,
        cores: int | None = None,
        disk: int | str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        report: str | os.PathLike[str] | None = None,
        serializer: Serializer = "json",
        check: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """`run` with explicit `args`/`kwargs` (no keyword names reserved)."""
        if not os.path.isfile(self.launcher):
            raise InputFileError(
                f"launcher not found: {self.launcher}",
                hint="is the pack directory visible on this node? see Packed.stage()",
            )
        with tempfile.TemporaryDirectory(prefix="lfm-run-") as scratch:
            rpath, keep = _report_file(report, self.name, scratch)
            out_path = os.path.join(scratch, "value.out")
            in_path = os.path.join(scratch, "args.in")
            write_input(in_path, tuple(args), dict(kwargs or {}), serializer)
            argv = [
                self.launcher,
                *self._options(memory, wall_time, cores, disk, cache_dir, rpath),
                "--input",
                in_path,
                "--input-format",
                serializer,
                "--output",
                out_path,
                "--output-format",
                "typed",  # the value comes back with its own type, whatever `serializer` is
            ]
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                check=False,
                env=None if env is None else {**os.environ, **env},
            )
            rep: Mapping[str, Any] | None = None
            try:
                with open(rpath, encoding="utf-8") as fh:
                    rep = json.load(fh)
            except (OSError, ValueError):
                rep = None
            encoded = _read_value(out_path) if proc.returncode == 0 else None
            result = Result(
                value=None if encoded is None else decode_value(encoded),
                exit_code=proc.returncode,
                report=rep,
                stdout=proc.stdout,
                stderr=proc.stderr,
                report_path=rpath if keep else None,
                encoded=encoded,
            )
        return result.check() if check else result

    # -- moving it ---------------------------------------------------------------------------

    def stage(self, dest: str | os.PathLike[str]) -> Packed:
        """Copy archive, launcher and lock into `dest` (e.g. a shared filesystem) atomically.

        Each file is copied to a temp name and renamed, so a node never sees half an archive;
        an identical archive already there is kept (staging twice is cheap).
        """
        target = Path(dest).resolve()
        target.mkdir(parents=True, exist_ok=True)
        files = [self.archive, self.launcher, *([self.lock] if self.lock else [])]
        placed: dict[str, str] = {}
        for src in files:
            dst = target / os.path.basename(src)
            if os.path.abspath(src) != str(dst) and not _same_file(src, dst):
                tmp = target / f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp"
                try:
                    shutil.copy2(src, tmp)
                    os.replace(tmp, dst)
                finally:
                    tmp.unlink(missing_ok=True)
            placed[src] = str(dst)
        return replace(
            self,
            archive=placed[self.archive],
            launcher=placed[self.launcher],
            lock=placed[self.lock] if self.lock else None,
        )


def _same_file(a: str, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), b.stat()
    except OSError:
        return False
    if sa.st_size != sb.st_size or int(sa.st_mtime) != int(sb.st_mtime):
        return False
    import filecmp

    return filecmp.cmp(a, b, shallow=False)


def write_input(
    path: str | os.PathLike[str],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    serializer: Serializer = "json",
) -> None:
    """Write the launcher's `--input` file: {"args": [...], "kwargs": {...}} (atomically)."""
    from lfm_pack.jsonio import atomic_open

    data = {"args": list(args), "kwargs": dict(kwargs)}
    if serializer == "pickle":
        import pickle

        with atomic_open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise LfmError(
            f"arguments are not JSON-serializable: {exc}",
            hint="pass JSON-compatible values, or serializer='pickle' (trusted data only)",
        ) from None
    with atomic_open(path, "w") as fh:
        fh.write(text + "\n")


def _read_value(path: str) -> bytes | None:
    """The encoded value the launcher wrote (None: the function ended by sys.exit(0))."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


__all__ = [
    "RUN_OPTIONS",
    "LaunchError",
    "LimitExceeded",
    "Packed",
    "RemoteError",
    "Result",
    "RunError",
    "TaskCrashed",
    "analyze",
    "default_pack_dir",
    "load",
    "pack",
    "target_of",
    "write_input",
]
