"""Warm mode (`<name>-run --serve`): import the target once, run every call in a forked child.

Why: a short task pays interpreter start-up and `import numpy` on every launch; a server that
has already imported the target pays a fork instead. Every call must still be measured,
limited and reported exactly as in single-shot mode, so the server does not supervise calls
itself: for each call it forks a *call monitor* (a copy of the warm server, target already
imported) which runs the unchanged single-shot `Monitor` — subreaper, wait4, /proc sampling,
watchdog or cgroup limits — around one more fork that calls the function. One call's crash,
limit kill or exception therefore ends only that call's processes; the server only routes
requests and results, and never runs user code after the import.

Protocol (docs/launcher.md, "Warm mode"): requests are JSON objects
`{"id", "args", "kwargs", "limits"}` as lines on stdin or as files atomically renamed into
`SPOOL/in/`; each call yields one result object
`{"event": "result", "id", "status", "exit_code", "value" | "error", "report"}` as a line on
stdout or as `SPOOL/out/<name>.json`. The real stdout is kept for the protocol only: fd 1 is
pointed at stderr, so anything the target prints cannot corrupt the result stream.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from . import exitcodes as ec
from .limits import Limits
from .monitor import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, Monitor, _prctl

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any, Callable


STOPPING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_LIMIT_KEYS = ("memory", "wall_time", "disk", "cores")


class RequestError(ValueError):
    """A request that is not a call (bad JSON, wrong types); answered, never fatal."""


class Request:
    """One parsed call request (`source` is the claimed spool file, if any)."""

    __slots__ = ("args", "id", "kwargs", "limits", "seq", "source", "t_read", "t_start")

    def __init__(
        self,
        seq: int,
        call_id: Any,
        args: list[Any],
        kwargs: dict[str, Any],
        limits: dict[str, Any],
        source: str | None = None,
    ) -> None:
        self.seq = seq
        self.id = call_id
        self.args = args
        self.kwargs = kwargs
        self.limits = limits
        self.source = source
        self.t_read = time.time()
        self.t_start = 0.0


def parse_request(data: Any, seq: int, default_id: Any = None) -> Request:
    """Validate one request object (pure). Unknown keys are refused: a typo must not pass."""
    if not isinstance(data, dict):
        raise RequestError("a request must be a JSON object")
    unknown = set(data) - {"id", "args", "kwargs", "limits"}
    if unknown:
        raise RequestError("unknown request keys: %s" % ", ".join(sorted(unknown)))
    call_id = data.get("id", default_id if default_id is not None else seq)
    args = data.get("args", [])
    kwargs = data.get("kwargs", {})
    if not isinstance(args, list):
        raise RequestError("args must be a list")
    if not isinstance(kwargs, dict):
        raise RequestError("kwargs must be an object")
    lim = data.get("limits") or {}
    if not isinstance(lim, dict):
        raise RequestError("limits must be an object")
    bad = set(lim) - set(_LIMIT_KEYS)
    if bad:
        raise RequestError("unknown limits: %s" % ", ".join(sorted(bad)))
    return Request(seq, call_id, args, kwargs, dict(lim))


def merge_limits(base: Limits, override: dict[str, Any]) -> Limits:
    """The server's --memory/--wall-time/--disk/--cores, overridden per request."""
    from .sizes import parse_size

    vals: dict[str, Any] = {
        "memory": base.memory,
        "wall_time": base.wall_time,
        "disk": base.disk,
        "cores": base.cores,
    }
    for key, value in override.items():
        if value is None:
            vals[key] = None
            continue
        try:
            if key in ("memory", "disk"):
                vals[key] = parse_size(value) if isinstance(value, str) else int(value)
            elif key == "wall_time":
                vals[key] = float(value)
            else:
                vals[key] = int(value)
        except (TypeError, ValueError) as exc:
            raise RequestError(f"limits.{key} {value!r}: {exc}") from None
        if vals[key] is not None and vals[key] <= 0:
            raise RequestError(f"limits.{key} must be positive")
    return Limits(**vals)


# ------------------------------------------------------------------ inside the call's task
def run_call(fn: Callable[..., Any], req: Request, events_fd: int, fmt: str = "json") -> int:
    """Call the already imported target in the forked task process; returns its exit code.

    The value is encoded by the single-shot encoder (`result.encode`, format `fmt`) and
    travels to the call monitor inside the `result` event: JSON text, or the pickle's bytes.
    """
    from .result import encode
    from .runner import Events, invoke

    events = Events(events_fd)
    events.emit("start")
    code, result, t1 = invoke(fn, req.args, req.kwargs, events)
    if code is not None:
        return code
    t2 = time.time()
    enc = encode(result, fmt)
    if enc.kind == "unsaved":
        sys.stderr.write("lfm: warning: the return value (%s) %s\n" % (enc.type, enc.reason))
    payload = {"value_pickle": enc.data} if enc.kind == "pickle" else {"value_json": enc.data}
    events.emit(
        "result",
        status="ok",
        call_s=round(t2 - t1, 6),
        result_type=enc.type,
        value=enc.meta(),
        **payload,
    )
    return 0


def _exit_child(code: int) -> None:
    """End a forked process without returning into the server loop (atexit runs, as at home)."""
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:  # a user atexit hook must not change the outcome
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


# ------------------------------------------------------------------ the server
class Server:
    """The warm server: reads requests, forks one call monitor per call, writes results."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.slots = max(1, int(cfg.get("slots") or 1))
        self.spool: str | None = cfg.get("spool")
        self.base_limits: Limits = cfg["limits"]
        self.fn: Callable[..., Any] | None = None
        self.proto_in = -1
        self.proto_out = -1
        self.queue: list[Request] = []
        self.running: dict[int, dict[str, Any]] = {}  # call monitor pid -> state
        self.seq = 0
        self.done = 0
        self.eof = False
        self.stop_signal: int | None = None
        self.signals: list[int] = []
        self.inbuf = b""
        self.import_s = 0.0
        self.t_ready = 0.0
        self._wake_r = -1
        self._wake_w = -1

    # ---- setup --------------------------------------------------------------------
    def take_stdio(self) -> None:
        """Keep the real stdout (and stdin) for the protocol; everybody else gets stderr/null."""
        self.proto_out = os.dup(1)
        os.dup2(2, 1)
        if self.spool is None:
            # left blocking (it may be a terminal shared with the shell): it is read only
            # after select() reports data, so one read never waits
            self.proto_in = os.dup(0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)

    def import_target(self) -> dict[str, Any] | None:
        """Activate the env and import the target once; the error info if that fails."""
        import importlib

        from .runner import _error_info, _print_error, _resolve, activated_environ

        cfg = self.cfg
        env_root = cfg["env_root"]
        runtime_dir = cfg["runtime_dir"]
        target = cfg["target"]
        app_dirs = [os.path.join(env_root, p) for p in cfg.get("app_paths", [])]
        # Compute the activated environment from the node's one *before* clearing, else the
        # task loses HOME, SLURM_*, OMP_NUM_THREADS, TMPDIR... (only the env's own keys survive).
        activated = activated_environ(env_root, app_dirs, runtime_dir, cfg.get("base_env"))
        os.environ.clear()
        os.environ.update(activated)
        t0 = time.time()
        if sys.flags.no_site:
            import site

            site.main()
        for d in reversed(app_dirs):
            sys.path.insert(0, d)
        if runtime_dir not in sys.path:
            sys.path.append(runtime_dir)
        sys.argv = [os.path.join(env_root, target.get("app_path") or "")]
        try:
            module = importlib.import_module(target["module"])
            self.fn = _resolve(module, target["qualname"])
        except BaseException as exc:
            _print_error(exc)
            return _error_info(exc, "import")
        self.import_s = round(time.time() - t0, 6)
        import gc

        # Every object the import made goes to the permanent generation: a forked call's
        # garbage collections then never touch (and copy-on-write) the inherited pages.
        gc.collect()
        gc.freeze()
        return None

    # ---- output -------------------------------------------------------------------
    def emit(self, obj: dict[str, Any], req: Request | None = None, raw: bytes = b"") -> None:
        """One result: a stdout line, or an atomically written spool file.

        `raw` is a call monitor's already encoded line, forwarded without re-encoding.
        """
        text = raw.decode().rstrip("\n") if raw else json.dumps(obj, sort_keys=True, default=str)
        if self.spool is not None and req is not None and req.source is not None:
            out_dir = os.path.join(self.spool, "out")
            stem = os.path.basename(req.source)
            tmp = os.path.join(out_dir, ".%s.%d.tmp" % (stem, os.getpid()))
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            os.replace(tmp, os.path.join(out_dir, stem))
            try:
                os.unlink(req.source)
            except OSError:
                pass
            return
        if self.spool is not None and obj.get("event") == "result":
            return  # nowhere to answer a spool request we could not even claim
        data = (text + "\n").encode()
        while data:
            try:
                n = os.write(self.proto_out, data)
            except BlockingIOError:
                select.select([], [self.proto_out], [])
                continue
            except BrokenPipeError:
                return  # the client went away; calls still end and write their reports
            data = data[n:]

    def refuse(self, call_id: Any, message: str, req: Request | None = None) -> None:
        self.emit(
            {
                "event": "result",
                "id": call_id,
                "status": "error",
                "exit_code": ec.USAGE,
                "error": {"type": "RequestError", "phase": "request", "message": message},
                "report": None,
            },
            req,
        )

    # ---- requests -----------------------------------------------------------------
    def _read_stdin(self) -> None:
        try:
            chunk = os.read(self.proto_in, 1 << 16)
        except BlockingIOError:
            return
        if not chunk:
            self.eof = True
            if self.inbuf.strip():
                self._add_line(self.inbuf)
            self.inbuf = b""
            return
        self.inbuf += chunk
        *lines, self.inbuf = self.inbuf.split(b"\n")
        for line in lines:
            if line.strip():
                self._add_line(line)

    def _add_line(self, line: bytes) -> None:
        self.seq += 1
        try:
            data = json.loads(line)
        except ValueError as exc:
            self.refuse(None, f"request {self.seq} is not JSON: {exc}")
            return
        try:
            req = parse_request(data, self.seq)
            merge_limits(self.base_limits, req.limits)
        except RequestError as exc:
            self.refuse(data.get("id") if isinstance(data, dict) else None, str(exc))
            return
        self.queue.append(req)

    def _claim_spool(self) -> None:
        """Claim requests by renaming them into work/: with several servers, one rename wins."""
        assert self.spool is not None
        in_dir = os.path.join(self.spool, "in")
        work = os.path.join(self.spool, "work")
        try:
            names = sorted(
                e.name
                for e in os.scandir(in_dir)
                if e.name.endswith(".json") and not e.name.startswith(".")
            )
        except OSError:
            return
        for name in names:
            if len(self.running) + len(self.queue) >= self.slots:
                return
            claimed = os.path.join(work, name)
            try:
                os.rename(os.path.join(in_dir, name), claimed)
            except OSError:
                continue  # another server was faster
            self.seq += 1
            stem = name[: -len(".json")]
            try:
                with open(claimed, encoding="utf-8") as fh:
                    data = json.load(fh)
                req = parse_request(data, self.seq, default_id=stem)
                merge_limits(self.base_limits, req.limits)
            except (OSError, ValueError) as exc:
                bad = Request(self.seq, stem, [], {}, {}, source=claimed)
                self.refuse(stem, f"request file {name}: {exc}", bad)
                continue
            req.source = claimed
            self.queue.append(req)

    # ---- calls --------------------------------------------------------------------
    def _start(self, req: Request) -> None:
        used = {st["slot"] for st in self.running.values()}
        slot = min(i for i in range(self.slots + 1) if i not in used)
        req.t_start = time.time()
        try:
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(r)
                os.close(w)
                raise
        except OSError as exc:  # EAGAIN/ENOMEM/EMFILE: this call fails, the server goes on
            self.done += 1
            self.emit(
                {
                    "event": "result",
                    "id": req.id,
                    "status": "infrastructure",
                    "exit_code": ec.INFRASTRUCTURE,
                    "error": {
                        "type": "ForkError",
                        "phase": "setup",
                        "message": f"cannot start the call: {exc}",
                    },
                    "report": None,
                },
                req,
            )
            return
        if pid == 0:
            code = ec.MONITOR
            try:
                os.close(r)
                self._child_reset()
                code = self._call_monitor(req, w, slot)
            except BaseException:
                import traceback

                traceback.print_exc()
            _exit_child_quiet(code)
        os.close(w)
        os.set_blocking(r, False)
        self.running[pid] = {
            "req": req,
            "fd": r,
            "buf": b"",
            "eof": False,
            "status": None,
            "slot": slot,
        }

    def _child_reset(self) -> None:
        """In a fresh call monitor: drop the server's signal plumbing and protocol fds."""
        signal.set_wakeup_fd(-1)
        for s in (*STOPPING, signal.SIGCHLD):
            signal.signal(s, signal.SIG_DFL)
        for fd in (self.proto_in, self.proto_out, self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for st in self.running.values():
            if not st["eof"]:  # a closed fd's number may already be reused, e.g. by ours
                try:
                    os.close(st["fd"])
                except OSError:
                    pass
        # the server gone (even by SIGKILL) = a SIGTERM for this call: it ends and reports
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def _call_monitor(self, req: Request, result_fd: int, slot: int) -> int:
        """Supervise one call exactly like single-shot mode; send its result; exit code 0."""
        from . import report

        cfg = self.cfg
        limits = merge_limits(self.base_limits, req.limits)
        mon = Monitor(
            limits=limits,
            interval=cfg["interval"],
            kill_grace=cfg["kill_grace"],
            measure_disk=cfg["measure_disk"],
            cpu_offset=slot,
        )
        if mon.fork():
            os.close(result_fd)
            assert self.fn is not None
            code = ec.MONITOR
            try:
                code = run_call(self.fn, req, mon.events_fd, cfg.get("output_format") or "json")
            finally:
                _exit_child(code)
        res = mon.supervise()
        target = cfg["target"]
        rep = report.build(
            mon=res,
            mode="warm",
            name=cfg["name"],
            target={k: target.get(k) for k in ("raw", "module", "qualname", "kind")},
            env_key=cfg["env_key"],
            cache=cfg["cache"],
            timings={
                "queue_s": round(req.t_start - req.t_read, 6),
                "fork_s": round(mon.t_fork_wall - req.t_start, 6),
                "target_import_s": 0.0,
                "server_import_s": self.import_s,
            },
            limits=limits.as_dict(),
            argv=[],
            started_at=req.t_start,
        )
        rep["timings"]["total_s"] = round(time.time() - req.t_read, 6)
        rep["call"] = {
            "id": req.id,
            "seq": req.seq,
            "server_pid": os.getppid(),
            "monitor_pid": os.getpid(),
            "request_file": req.source,
            "slot": slot,
        }
        rep["server"] = {
            "pid": os.getppid(),
            "slots": self.slots,
            "started_at": cfg["started_at"],
            "timings": cfg["server_timings"],
        }
        path = self._report_path(req)
        report_path = None
        if path is not None:
            try:
                report.write(path, rep)
                report_path = path
            except OSError as exc:
                sys.stderr.write(f"lfm: cannot write report {path}: {exc}\n")
        out: dict[str, Any] = {
            "event": "result",
            "id": req.id,
            "status": rep["status"],
            "exit_code": rep["exit_code"],
            "report": rep,
            "report_path": report_path,
        }
        ev = res["events"].get("result") or {}
        if rep["status"] == "ok":
            if "value_pickle" in ev:  # inline, so a warm result leaves no file behind
                import base64

                out["value_pickle"] = base64.b64encode(ev["value_pickle"]).decode("ascii")
            else:
                out["value"] = json.loads(ev["value_json"]) if "value_json" in ev else None
        else:
            out["error"] = rep["error"]
        data = (json.dumps(out, sort_keys=True, default=str) + "\n").encode()
        try:
            while data:
                n = os.write(result_fd, data)
                data = data[n:]
        except BrokenPipeError:
            pass  # the server is gone (we got its death signal): the report file is the record
        os.close(result_fd)
        return 0

    def _report_path(self, req: Request) -> str | None:
        from .report import default_path

        rdir = self.cfg.get("report_dir") or os.environ.get("LFM_REPORT_DIR")
        if not rdir:
            return None
        base = default_path(rdir, self.cfg["name"])[: -len(".json")]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(req.id))[:64]
        return "%s-%d-%s.json" % (base, req.seq, safe)

    def _read_call(self, pid: int) -> None:
        st = self.running[pid]
        while True:
            try:
                chunk = os.read(st["fd"], 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                st["eof"] = True
                os.close(st["fd"])
                return
            st["buf"] += chunk

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if pid == 0:
                return
            if pid in self.running:
                self.running[pid]["status"] = status
            # anything else is an orphan re-parented to us (we are a subreaper): reaped

    def _finish_done(self) -> None:
        for pid in [p for p, st in self.running.items() if st["eof"] and st["status"] is not None]:
            st = self.running.pop(pid)
            req: Request = st["req"]
            self.done += 1
            buf: bytes = st["buf"]
            if buf.endswith(b"}\n") and buf.count(b"\n") == 1:  # complete (else cut short)
                self.emit({"event": "result"}, req, raw=buf)
            else:
                status = st["status"]
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                msg = (
                    "the call's monitor ended by %s before reporting" % signal.Signals(sig).name
                    if sig
                    else "the call's monitor exited with %d before reporting"
                    % os.WEXITSTATUS(status)
                )
                out = {
                    "event": "result",
                    "id": req.id,
                    "status": "infrastructure",
                    "exit_code": ec.MONITOR,
                    "error": {"type": "MonitorDied", "phase": "run", "message": msg},
                    "report": None,
                }
                self.emit(out, req)

    # ---- signals ------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if self.stop_signal is None:
                self.stop_signal = sig
                for req in self.queue:  # accepted but never started
                    if self.spool is not None and req.source is not None:
                        name = os.path.basename(req.source)  # unclaim: another server may run it
                        try:
                            os.rename(req.source, os.path.join(self.spool, "in", name))
                            continue
                        except OSError:
                            pass
                    self.emit(
                        {
                            "event": "result",
                            "id": req.id,
                            "status": "signal",
                            "exit_code": ec.SIGNAL_BASE + sig,
                            "error": {
                                "type": "Cancelled",
                                "phase": "queue",
                                "message": "the server received %s before the call started"
                                % signal.Signals(sig).name,
                            },
                            "report": None,
                        },
                        None if self.spool is None else req,
                    )
                self.queue = []
            for pid in self.running:  # each call monitor forwards to its tree and reports
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

    # ---- main loop ----------------------------------------------------------------
    def _stop_file(self) -> bool:
        return self.spool is not None and os.path.exists(os.path.join(self.spool, "stop"))

    def loop(self) -> int:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for s in (*STOPPING, signal.SIGCHLD):
            signal.signal(s, self._on_signal)
        poll = float(self.cfg.get("poll") or 0.05)
        reason = "eof"
        while True:
            self._handle_signals()
            self._reap()
            self._finish_done()
            accepting = self.stop_signal is None and not self.eof
            if accepting and self.spool is not None:
                if self._stop_file():
                    self.eof = True
                    reason = "stop-file"
                    accepting = False
                elif len(self.running) + len(self.queue) < self.slots:
                    self._claim_spool()
            while self.queue and len(self.running) < self.slots and self.stop_signal is None:
                self._start(self.queue.pop(0))
            if not accepting and not self.running and not self.queue:
                break
            fds = [self._wake_r] + [st["fd"] for st in self.running.values() if not st["eof"]]
            reading = (
                accepting and self.spool is None and len(self.queue) < self.slots
            )  # backpressure: read no faster than calls can start
            if reading:
                fds.append(self.proto_in)
            timeout = None
            if accepting and self.spool is not None:
                timeout = poll
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                ready = []
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            for pid, st in list(self.running.items()):
                if not st["eof"] and st["fd"] in ready:
                    self._read_call(pid)
            if reading and self.proto_in in ready:
                self._read_stdin()
        if self.stop_signal is not None:
            reason = signal.Signals(self.stop_signal).name
        self.emit({"event": "stopped", "reason": reason, "calls": self.done, "pid": os.getpid()})
        return 0 if self.stop_signal is None else ec.SIGNAL_BASE + self.stop_signal


def _exit_child_quiet(code: int) -> None:
    """End a call monitor: no atexit (it ran no user code after the fork), flush and go."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def serve(cfg: dict[str, Any]) -> int:
    """Run the warm server until EOF / stop file / SIGTERM; returns the server's exit code."""
    srv = Server(cfg)
    if srv.spool is not None:
        for sub in ("in", "work", "out"):
            os.makedirs(os.path.join(srv.spool, sub), exist_ok=True)
    srv.take_stdio()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    # Import what every call monitor needs now, so forks inherit it instead of importing it
    # (os.wait4 imports `resource` on its first use in a process).
    import resource  # noqa: F401

    from . import procfs, report, runner  # noqa: F401

    err = srv.import_target()
    if err is not None:
        srv.emit({"event": "failed", "exit_code": ec.FUNCTION_ERROR, "error": err})
        return ec.FUNCTION_ERROR
    srv.t_ready = time.time()
    srv.emit(
        {
            "event": "ready",
            "pid": os.getpid(),
            "slots": srv.slots,
            "spool": srv.spool,
            "target": cfg["target"].get("raw"),
            "import_s": srv.import_s,
        }
    )
    return srv.loop()
