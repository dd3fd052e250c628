"""Entry points of the runtime: `launch` (called by `<name>-run`), `monitor`, `verify`, `evict`.

The launcher starts it as ``python -I -S -c BOOT RUNTIME_DIR launch ...``: -I ignores the
node's PYTHON* variables and user site, -S skips site-packages so the monitor's start-up is
only the bare interpreter (the task process adds site-packages itself, see runner.py).
"""

from __future__ import annotations

import os
import sys
import time

from . import exitcodes as ec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any


BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    "from lfm_runtime.__main__ import main;sys.exit(main(sys.argv[2:]))"
)


class UsageError(Exception):
    pass


class Opts:
    """Parsed options (attribute access like argparse's Namespace)."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


class Parser:
    """A minimal option parser: argparse alone costs ~14 ms of start-up on every run.

    Options are `--name VALUE`, `--name=VALUE` or flags; kinds: str, int, float, size, flag,
    append, or a tuple of choices.
    """

    def __init__(self) -> None:
        self.specs: dict[str, tuple[str, Any, Any]] = {}

    def add(
        self, name: str, kind: Any = "str", default: Any = None, dest: str | None = None
    ) -> None:
        self.specs[name] = (dest or name.lstrip("-").replace("-", "_"), kind, default)

    def parse(self, argv: list[str]) -> Any:
        ns = Opts()
        for dest, kind, default in self.specs.values():
            setattr(ns, dest, [] if kind == "append" else (False if kind == "flag" else default))
        i = 0
        while i < len(argv):
            arg = argv[i]
            name, eq, value = arg.partition("=")
            if name not in self.specs:
                raise UsageError(f"unknown option {arg}")
            dest, kind, _ = self.specs[name]
            if kind == "flag":
                if eq:
                    raise UsageError(f"{name} takes no value")
                setattr(ns, dest, True)
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            i += 1
            setattr(ns, dest, self._convert(name, kind, value, getattr(ns, dest)))
        return ns

    @staticmethod
    def _convert(name: str, kind: Any, value: str, old: Any) -> Any:
        try:
            if kind == "int":
                return int(value)
            if kind == "float":
                v = float(value)
                if v <= 0:
                    raise ValueError("must be positive")
                return v
            if kind == "size":
                from .sizes import parse_size

                return parse_size(value)
            if kind == "append":
                return [*old, value]
            if isinstance(kind, tuple) and value not in kind:
                raise ValueError("choose one of {}".format(", ".join(kind)))
        except ValueError as exc:
            raise UsageError(f"{name} {value}: {exc}") from None
        return value


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _add_monitor_options(p: Parser) -> None:
    p.add("--memory", "size")
    p.add("--wall-time", "float")
    p.add("--disk", "size")
    p.add("--cores", "int")
    p.add("--interval", "float", 0.05)
    p.add("--kill-grace", "float", 5.0)
    p.add("--measure-disk", "flag")
    p.add("--report")
    p.add("--rmonitor")


def _limits(ns: Any) -> Any:
    from .limits import Limits

    if ns.cores is not None and ns.cores < 1:
        raise UsageError("--cores must be >= 1")
    return Limits(memory=ns.memory, wall_time=ns.wall_time, disk=ns.disk, cores=ns.cores)


def report_path(ns: Any, name: str) -> str | None:
    """Where this run's report goes: `--report FILE`, a unique file inside `--report DIR`
    (an existing directory, or a path ending in "/"), else inside $LFM_REPORT_DIR, else none."""
    from . import report

    path: str | None = ns.report
    if path is None:
        rdir = os.environ.get("LFM_REPORT_DIR")
        return report.default_path(rdir, name) if rdir else None
    if path.endswith(os.sep) or os.path.isdir(path):
        return report.default_path(path, name)
    return path


def check_writable(flag: str, path: str, make_dir: bool) -> str | None:
    """One line saying why `path` cannot be written (None if it can), checked before the call.

    Report directories are created (as before); an --output directory must exist.
    """
    from .result import probe_writable

    if make_dir:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as exc:
            return "%s %s: cannot create its directory: %s" % (flag, path, exc.strerror or exc)
    why = probe_writable(path)
    return None if why is None else "%s %s: cannot write there: %s" % (flag, path, why)


def _write_reports(ns: Any, rep: dict[str, Any], path: str | None) -> str | None:
    from . import report

    for where, data in ((path, rep), (ns.rmonitor, None)):
        if not where:
            continue
        try:
            report.write(where, rep if data is not None else report.to_rmonitor(rep))
        except OSError as exc:  # the outcome stands; the record of it is what is lost
            _say("error: cannot write the report %s: %s" % (where, exc.strerror or exc))
    return path


def announce(rep: dict[str, Any]) -> None:
    """The one line a person needs when the task did not end by itself normally.

    Shared by the launcher and `lfm-pack monitor`, so both say the same thing for the same case.
    """
    status = rep.get("status")
    err = rep.get("error") or {}
    if status == "limit":
        _say("limit: %s" % err.get("message"))
    elif status in ("signal", "crashed"):
        _say(str(err.get("message")))


def _say(msg: str) -> None:
    sys.stderr.write(f"lfm: {msg}\n")
    sys.stderr.flush()


def cmd_launch(argv: list[str]) -> int:
    t_main = time.time()
    opts, rest = _split(argv)
    p = Parser()
    p.add("--env")
    p.add("--name", default="lfm")
    p.add("--timing", "append")
    p.add("--cache-hit", default="1")
    p.add("--cache-dir")
    p.add("--lock-fd", "int", -1)
    p.add("--target")
    p.add("--exec", "flag", dest="exec_")
    p.add("--input")
    p.add("--input-format", ("json", "pickle"), "json")
    p.add("--output")
    p.add("--output-format", ("json", "typed", "pickle"), "json")
    p.add("--serve", "flag")
    p.add("--spool")
    p.add("--slots", "int", 1)
    p.add("--report-dir")
    p.add("--poll", "float", 0.05)
    _add_monitor_options(p)
    ns = p.parse(opts)
    if not ns.env:
        raise UsageError("--env is required")
    if ns.lock_fd >= 0:
        try:  # the shared "in use" lock stays with the monitor, not with exec'd commands
            os.set_inheritable(ns.lock_fd, False)
        except OSError:
            pass
    env_root = os.path.abspath(ns.env)
    runtime_dir = os.path.join(env_root, ".lfm", "runtime")
    from . import manifest as mf
    from . import preflight, report

    man = mf.load_slim(env_root)
    name = ns.name
    rpath = None if ns.serve else report_path(ns, name)
    if rpath is not None:
        why = check_writable("--report", rpath, make_dir=True)
        if why is not None:
            _say("error: " + why)
            return ec.OUTPUT
    problems = preflight.check(man)
    if problems:
        msg = "preflight: " + "; ".join(problems)
        _say(msg)
        _write_reports(
            ns,
            report.infrastructure(
                name=name,
                message=msg,
                exit_code=ec.PREFLIGHT,
                kind="Preflight",
                env_key=man.get("env_key"),
            ),
            rpath,
        )
        return ec.PREFLIGHT
    targets = man.get("targets") or []
    target: dict[str, Any] = {}
    if ns.exec_:
        if not rest:
            raise UsageError("--exec needs a command after --")
        mode = "exec"
    else:
        if not targets:
            raise UsageError("the pack has no target; use --exec -- CMD")
        target = targets[0]
        if ns.target is not None:
            chosen = [
                t
                for t in targets
                if ns.target in (t.get("raw"), t.get("qualname"), t.get("module"))
            ]
            if not chosen:
                raise UsageError(
                    "no target {!r} in this pack (have: {})".format(
                        ns.target, ", ".join(str(t.get("raw")) for t in targets)
                    )
                )
            target = chosen[0]
        mode = "function" if target.get("qualname") else "script"
    if (ns.input or ns.output) and mode != "function":
        raise UsageError("--input/--output apply to function targets only")
    if ns.output and not ns.serve:
        why = check_writable("--output", ns.output, make_dir=False)
        if why is not None:  # refused before the call: the function's work is never thrown away
            _say("error: " + why)
            _write_reports(
                ns,
                report.infrastructure(
                    name=name,
                    message=why,
                    exit_code=ec.OUTPUT,
                    kind="OutputError",
                    env_key=man.get("env_key"),
                ),
                rpath,
            )
            return ec.OUTPUT
    ts: dict[str, float] = {}
    for item in ns.timing:
        k, _, v = item.partition("=")
        if v.isdigit():
            ts[k] = int(v) / 1e9
    timings: dict[str, Any] = {}
    if "t0" in ts and "exec" in ts:
        timings["launcher_s"] = round(ts["exec"] - ts["t0"], 6)
        timings["interpreter_start_s"] = round(max(0.0, t_main - ts["exec"]), 6)
    if "wait0" in ts and "wait1" in ts:
        timings["cache_wait_s"] = round(ts["wait1"] - ts["wait0"], 6)
    if "wait1" in ts and "unpacked" in ts:
        timings["unpack_s"] = round(ts["unpacked"] - ts["wait1"], 6)
    started_at = ts.get("t0", t_main)
    if ns.serve:
        return _serve(ns, man, env_root, runtime_dir, target, mode, rest, timings, started_at)
    if ns.spool or ns.report_dir or ns.slots != 1:
        raise UsageError("--spool, --slots and --report-dir apply to --serve only")
    spec: dict[str, Any] = {
        "env_root": env_root,
        "runtime_dir": runtime_dir,
        "target": target,
        "mode": mode,
        "app_paths": man.get("app_paths") or [],
        "args": rest,
        "input": ns.input,
        "input_format": ns.input_format,
        "output": ns.output,
        "output_format": ns.output_format,
        "value_path": _value_path(rpath, name),
    }
    from .monitor import Monitor

    mon = Monitor(
        limits=_limits(ns),
        interval=ns.interval,
        kill_grace=ns.kill_grace,
        measure_disk=True if ns.measure_disk else None,
    )
    if mon.fork():
        # ---- the task process: never returns into the monitor below ----
        if mode == "exec":
            from .runner import activated_environ

            app_dirs = [os.path.join(env_root, a) for a in spec["app_paths"]]
            env = activated_environ(env_root, app_dirs, runtime_dir)
            os.environ.clear()
            os.environ.update(env)
            try:
                os.execvpe(rest[0], rest, env)
            except OSError as exc:
                _say(f"cannot run {rest[0]}: {exc.strerror}")
                os._exit(127)
        from .runner import run_target

        return run_target(spec, mon.events_fd)
    timings["monitor_setup_s"] = round(mon.t_fork_wall - t_main, 6)
    res = mon.supervise()
    timings["total_s"] = round(time.time() - started_at, 6)
    key = man.get("env_key")
    cache = {"hit": ns.cache_hit == "1", "path": env_root, "dir": ns.cache_dir}
    tgt = (
        {k: target.get(k) for k in ("raw", "module", "qualname", "kind")}
        if target
        else {"command": rest}
    )
    rep = report.build(
        mon=res,
        mode=mode,
        name=name,
        target=tgt,
        env_key=key,
        cache=cache,
        timings=timings,
        limits=_limits(ns).as_dict(),
        argv=rest,
        started_at=started_at,
    )
    _write_reports(ns, rep, rpath)
    announce(rep)
    return int(rep["exit_code"])


def _value_path(rpath: str | None, name: str) -> str:
    """Where a value JSON cannot hold is pickled without --output: beside the report (same
    stem), else a unique name in the working directory."""
    from . import report

    base = rpath or report.default_path(os.getcwd(), name)
    if base.endswith(".json"):
        base = base[: -len(".json")]
    return os.path.abspath(base + ".value.pkl")


def _serve(
    ns: Any,
    man: dict[str, Any],
    env_root: str,
    runtime_dir: str,
    target: dict[str, Any],
    mode: str,
    rest: list[str],
    timings: dict[str, Any],
    started_at: float,
) -> int:
    """Warm mode: check the options, then hand over to serve.py (see its docstring)."""
    if mode != "function":
        raise UsageError("--serve needs a function target (not a script or --exec)")
    if rest or ns.input or ns.output:
        raise UsageError("--serve reads its calls from stdin or --spool, not -- ARGS/--input")
    if ns.report or ns.rmonitor:
        raise UsageError("--serve writes one report per call: use --report-dir DIR")
    if ns.slots < 1:
        raise UsageError("--slots must be >= 1")
    from .serve import serve

    timings["server_setup_s"] = round(time.time() - started_at, 6)
    return serve(
        {
            "env_root": env_root,
            "runtime_dir": runtime_dir,
            "target": target,
            "app_paths": man.get("app_paths") or [],
            "name": ns.name,
            "env_key": man.get("env_key"),
            "cache": {"hit": ns.cache_hit == "1", "path": env_root, "dir": ns.cache_dir},
            "limits": _limits(ns),
            "interval": ns.interval,
            "kill_grace": ns.kill_grace,
            "measure_disk": True if ns.measure_disk else None,
            "slots": ns.slots,
            "spool": os.path.abspath(ns.spool) if ns.spool else None,
            "report_dir": ns.report_dir,
            "output_format": ns.output_format,
            "poll": ns.poll,
            "started_at": round(started_at, 3),
            "server_timings": timings,
        }
    )


def cmd_monitor(argv: list[str]) -> int:
    """Monitor any command (the submit-host `lfm-pack monitor` uses this)."""
    t_main = time.time()
    opts, rest = _split(argv)
    p = Parser()
    p.add("--name", default="monitor")
    p.add("--print-report", "flag")
    p.add("--stdout-to-stderr", "flag")
    p.add("--no-children-files", "flag")
    _add_monitor_options(p)
    ns = p.parse(opts)
    if not rest:
        raise UsageError("monitor needs a command after --")
    from . import report
    from .monitor import Monitor

    rpath = report_path(ns, ns.name)
    for flag, where in (("--report", rpath), ("--rmonitor", ns.rmonitor)):
        why = check_writable(flag, where, make_dir=True) if where else None
        if why is not None:
            _say("error: " + why)
            return ec.OUTPUT

    mon = Monitor(
        limits=_limits(ns),
        interval=ns.interval,
        kill_grace=ns.kill_grace,
        measure_disk=True if ns.measure_disk else None,
        use_children_files=False if ns.no_children_files else None,
    )
    if mon.fork():
        if ns.stdout_to_stderr:
            os.dup2(2, 1)
        try:
            os.execvp(rest[0], rest)
        except OSError as exc:
            _say(f"cannot run {rest[0]}: {exc.strerror}")
            os._exit(127)
    res = mon.supervise()
    rep = report.build(
        mon=res,
        mode="exec",
        name=ns.name,
        target={"command": rest},
        env_key=None,
        cache={"hit": None, "path": None},
        timings={"total_s": round(time.time() - t_main, 6)},
        limits=_limits(ns).as_dict(),
        argv=rest,
        started_at=t_main,
    )
    _write_reports(ns, rep, rpath)
    announce(rep)
    if ns.print_report:
        import json

        sys.stdout.write(json.dumps(rep, indent=2, sort_keys=True) + "\n")
        sys.stdout.flush()
    return int(rep["exit_code"])


def cmd_verify(argv: list[str]) -> int:
    """Check an extracted env against its manifest (used by the launcher before marking it)."""
    from . import manifest as mf

    if len(argv) != 1:
        raise UsageError("verify ENV_ROOT")
    try:
        man = mf.load(argv[0])
    except (OSError, ValueError) as exc:
        _say(f"unreadable manifest: {exc}")
        return ec.INFRASTRUCTURE
    problems = mf.verify(argv[0], man)
    for prob in problems:
        _say("checksum: " + prob)
    if problems:
        return ec.INFRASTRUCTURE
    try:
        mf.write_slim(argv[0], man)
    except OSError as exc:
        _say("cannot write the manifest cache: %s" % exc)
        return ec.INFRASTRUCTURE
    return ec.OK


def cmd_evict(argv: list[str]) -> int:
    from .cache import evict

    p = Parser()
    p.add("--cache-dir")
    p.add("--max-size", "size")
    p.add("--keep")
    ns = p.parse(argv)
    if not (ns.cache_dir and ns.max_size and ns.keep):
        raise UsageError("evict --cache-dir DIR --max-size SIZE --keep KEY")
    out = evict(ns.cache_dir, ns.max_size, ns.keep)
    removed = out["removed"]
    if isinstance(removed, list) and removed:
        _say("cache: evicted %s" % ", ".join(str(k) for k in removed))
    return ec.OK


COMMANDS = {"launch": cmd_launch, "monitor": cmd_monitor, "verify": cmd_verify, "evict": cmd_evict}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] not in COMMANDS:
        _say("usage: lfm_runtime {{{}}} ...".format(",".join(COMMANDS)))
        return ec.USAGE
    try:
        return COMMANDS[args[0]](args[1:])
    except UsageError as exc:
        _say(f"usage: {exc} (see --help)")
        return ec.USAGE
    except Exception:  # a bug in the runtime: say so with its own exit code
        import traceback

        traceback.print_exc()
        _say("internal error of the lfm runtime; the task's outcome is unknown")
        return ec.MONITOR


if __name__ == "__main__":
    sys.exit(main())
