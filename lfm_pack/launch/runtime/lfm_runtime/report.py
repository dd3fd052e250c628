"""The per-run report (`lfm-pack.report/1`): built from the monitor's result, written atomically.

One JSON per run carries what a scheduler's retry rule and a person both need: a status class,
the exit code, who ended the task, the env key and cache hit, a time breakdown, resources with
the method used, and the limit that fired. `to_rmonitor` exports the cctools resource_monitor
summary shape (`[value, "unit"]` pairs) for Work Queue / TaskVine users.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

from . import SCHEMA_REPORT, __version__
from . import exitcodes as ec

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any


def signal_name(sig: int | None) -> str | None:
    if sig is None:
        return None
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "SIG%d" % sig


#: Signals a process gets from its own code: a fault the kernel raises (SEGV, BUS, FPE, ILL,
#: TRAP, SYS) or abort(). Schedulers and people end tasks with TERM/INT/HUP/KILL/USR*, and
#: those reach the monitor too (same process group/cgroup): so a task dying of one of these
#: without the monitor having sent or forwarded anything crashed by itself. Measured in
#: benchmarks/crash_origin.py: the core-dump flag of wait4/waitid cannot tell (it follows
#: RLIMIT_CORE, for a kill from outside as for a real fault).
CRASH_SIGNALS = frozenset(
    getattr(signal, n)
    for n in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS")
    if hasattr(signal, n)
)

_CRASH_WHAT = {
    "SIGSEGV": "a segmentation fault (invalid memory access)",
    "SIGBUS": "a bus error (e.g. a truncated memory-mapped file)",
    "SIGFPE": "an arithmetic fault (e.g. integer division by zero in C)",
    "SIGILL": "an illegal instruction (e.g. code built for a newer CPU)",
    "SIGABRT": "abort() (a failed C assertion, heap corruption, os.abort())",
    "SIGTRAP": "a trap (breakpoint)",
    "SIGSYS": "a bad system call (seccomp)",
}


def _human(limit: str, value: Any) -> str:
    if value is None:
        return "?"
    if limit in ("memory", "disk"):
        from .sizes import format_size

        return format_size(value)
    if limit == "wall_time":
        return "%g s" % round(float(value), 2)
    return str(value)


def classify(mon: dict[str, Any], mode: str, limit_memory: int | None) -> dict[str, Any]:
    """status / exit_code / ended_by / limits_exceeded / error from the monitor's result."""
    result_ev = mon["events"].get("result") or {}
    limits_exceeded: dict[str, Any] = {}
    error = result_ev.get("error")
    term = mon["term_signal"]
    if mon["limit_fired"] is not None:
        lf = mon["limit_fired"]
        limits_exceeded[lf["limit"]] = {
            "limit": lf["value"],
            "observed": lf["observed"],
            "at_s": lf["at_s"],
            "enforced_by": "monitor",
        }
        return {
            "status": "limit",
            "exit_code": ec.LIMIT,
            "ended_by": "monitor",
            "limits_exceeded": limits_exceeded,
            "error": {
                "type": "LimitExceeded",
                "phase": "run",
                "message": "{} limit exceeded: observed {} > limit {}; the monitor ended "
                "the task".format(
                    lf["limit"].replace("_", " "),
                    _human(lf["limit"], lf["observed"]),
                    _human(lf["limit"], lf["value"]),
                ),
            },
        }
    if mon["signal_received"] is not None:
        sig = mon["signal_received"]
        return {
            "status": "signal",
            "exit_code": ec.SIGNAL_BASE + sig,
            "ended_by": "external-signal",
            "limits_exceeded": {},
            "error": {
                "type": "Signal",
                "phase": "run",
                "message": f"the launcher received {signal_name(sig)} and ended the task",
            },
        }
    if term is not None:
        ooms = mon["oom_kills"]
        if term == signal.SIGKILL and (ooms["cgroup"] > 0 or ooms["node"] > 0):
            limits_exceeded["memory"] = {
                "limit": limit_memory,
                "observed": mon["resources"]["memory_peak_bytes"],
                "enforced_by": "kernel-oom-killer",
            }
            return {
                "status": "limit",
                "exit_code": ec.LIMIT,
                "ended_by": "kernel-oom-killer",
                "limits_exceeded": limits_exceeded,
                "error": {
                    "type": "OutOfMemory",
                    "phase": "run",
                    "message": "the kernel OOM killer ended the task (memory peak seen: %s)"
                    % _human("memory", mon["resources"]["memory_peak_bytes"]),
                },
            }
        if term in CRASH_SIGNALS and not mon.get("killed_by_monitor"):
            name = signal_name(term) or str(term)
            return {
                "status": "crashed",
                "exit_code": ec.SIGNAL_BASE + term,
                "ended_by": "task",
                "limits_exceeded": {},
                "error": {
                    "type": "Crash",
                    "phase": "run",
                    "signal": name,
                    "message": "the task crashed with %s: %s%s"
                    % (
                        name,
                        _CRASH_WHAT.get(name, "a fatal signal raised by its own code"),
                        " (core dumped)" if mon.get("core_dumped") else "",
                    ),
                },
            }
        return {
            "status": "signal",
            "exit_code": ec.SIGNAL_BASE + term,
            "ended_by": "external-signal",
            "limits_exceeded": {},
            "error": {
                "type": "Signal",
                "phase": "run",
                "message": f"the task was killed by {signal_name(term)} from outside the monitor",
            },
        }
    code = mon["exit_code"] or 0
    status = "ok" if code == 0 else "error"
    phase = (error or {}).get("phase")
    if code == ec.USAGE and phase == "input":
        status = "usage"  # refused before the call (bad --input): not a measured run
    elif code == ec.OUTPUT and phase == "output":
        status = "infrastructure"  # the function returned; its value could not be written
    if error is None and code != 0:
        error = {"type": "ExitStatus", "phase": "run", "message": "exited with status %d" % code}
    return {
        "status": status,
        "exit_code": code,
        "ended_by": "exit",
        "limits_exceeded": {},
        "error": error,
    }


def build(
    *,
    mon: dict[str, Any],
    mode: str,
    name: str,
    target: dict[str, Any],
    env_key: str | None,
    cache: dict[str, Any],
    timings: dict[str, Any],
    limits: dict[str, Any],
    argv: Any,
    started_at: float,
) -> dict[str, Any]:
    """Assemble the report dict (pure: no I/O)."""
    cls = classify(mon, mode, limits.get("memory_bytes"))
    ev = mon["events"]
    t = dict(timings)
    if "imported" in ev:
        t["target_import_s"] = ev["imported"].get("import_s")
    if "result" in ev and ev["result"].get("call_s") is not None:
        t["call_s"] = ev["result"]["call_s"]
    t["run_s"] = mon["resources"]["wall_time_s"]
    return {
        "schema": SCHEMA_REPORT,
        "status": cls["status"],
        "exit_code": cls["exit_code"],
        "ended_by": cls["ended_by"],
        "name": name,
        "mode": mode,
        "target": target,
        "argv": list(argv),
        "env_key": env_key,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "cache": cache,
        "timings": t,
        "resources": mon["resources"],
        "limits": dict(limits, enforcement=mon["enforcement"]),
        "limits_exceeded": cls["limits_exceeded"],
        "error": cls["error"],
        "value": (ev.get("result") or {}).get("value") if cls["status"] == "ok" else None,
        "exit": {
            "code": mon["exit_code"],
            "signal": signal_name(mon["term_signal"]),
            "core_dumped": mon["core_dumped"],
            "leftover_processes": mon["leftover_processes"],
        },
        "series": mon["series"],
        "monitor": {"version": __version__, "python": "%d.%d.%d" % tuple(sys.version_info[:3])},
    }


def infrastructure(
    *, name: str, message: str, exit_code: int, kind: str, env_key: str | None = None
) -> dict[str, Any]:
    """A report for runs that ended before the task started (bad archive, preflight)."""
    return {
        "schema": SCHEMA_REPORT,
        "status": "infrastructure",
        "exit_code": exit_code,
        "ended_by": "launcher",
        "name": name,
        "target": None,
        "env_key": env_key,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": round(time.time(), 3),
        "finished_at": round(time.time(), 3),
        "cache": None,
        "timings": {},
        "resources": None,
        "limits_exceeded": {},
        "error": {"type": kind, "phase": "setup", "message": message},
    }


def write(path: str, data: dict[str, Any]) -> None:
    """Write JSON atomically (temp file beside it + fsync + rename)."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def default_path(report_dir: str, name: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return os.path.join(
        report_dir, "%s-%s-%d-%s.json" % (name, socket.gethostname(), os.getpid(), stamp)
    )


_MIB = 1024.0 * 1024.0


def to_rmonitor(rep: dict[str, Any]) -> dict[str, Any]:
    """The cctools resource_monitor summary shape; memory/disk in MB (= MiB, as rmonitor)."""
    res = rep.get("resources") or {}
    status = rep.get("status")
    exit_type = {
        "ok": "normal",
        "error": "normal",
        "limit": "limits",
        "signal": "signal",
        "crashed": "signal",
    }.get(str(status), "normal")

    def mb(v: Any) -> Any:
        return [round((v or 0) / _MIB, 3), "MB"]

    out: dict[str, Any] = {
        "category": rep.get("name"),
        "command": " ".join(str(a) for a in rep.get("argv") or []),
        "host": rep.get("host"),
        "exit_type": exit_type,
        "exit_status": rep.get("exit_code"),
        "start": [int(float(rep.get("started_at") or 0) * 1e6), "us"],
        "end": [int(float(rep.get("finished_at") or 0) * 1e6), "us"],
        "wall_time": [res.get("wall_time_s", 0), "s"],
        "cpu_time": [res.get("cpu_time_s", 0), "s"],
        "cores": [res.get("cores_peak", 0), "cores"],
        "cores_avg": [res.get("cores_avg", 0), "cores"],
        "memory": mb(res.get("memory_peak_bytes")),
        "virtual_memory": mb(res.get("virtual_memory_peak_bytes")),
        "swap_memory": [0, "MB"],
        "bytes_read": mb(res.get("bytes_read")),
        "bytes_written": mb(res.get("bytes_written")),
        "disk": mb(res.get("disk_peak_bytes")),
        "max_concurrent_processes": [res.get("max_concurrent_processes", 0), "procs"],
        "total_processes": [res.get("total_processes", 0), "procs"],
        "peak_times": {
            k: [v, "s"] for k, v in (res.get("peak_times_s") or {}).items() if v is not None
        },
    }
    if exit_type == "signal":
        sig = (rep.get("exit") or {}).get("signal")
        out["signal"] = sig
    le = rep.get("limits_exceeded") or {}
    if le:
        conv: dict[str, Any] = {}
        for k, v in le.items():
            if k == "memory" or k == "disk":
                conv[k] = mb(v.get("observed"))
            elif k == "wall_time":
                conv[k] = [v.get("observed"), "s"]
            else:
                conv[k] = v.get("observed")
        out["limits_exceeded"] = conv
    else:
        out["limits_exceeded"] = None
    return out
