"""Can a task's crash be told from a kill from outside? (issue 12 item 4); prints Markdown tables.

  python benchmarks/crash_origin.py [--repeat 5]

Part 1, the kernel's view: the same fatal signals, raised by the process itself (a real
NULL dereference, a truncated mmap, abort()) or sent to it from outside with kill(2), with
RLIMIT_CORE 0 and unlimited. For each, what a parent learns: waitid's si_code
(CLD_KILLED/CLD_DUMPED) and wait4's WCOREDUMP. The point: the core-dump flag follows the core
limit (and core_pattern), not the origin, so neither tells a crash from a kill.

Part 2, lfm's view: the same cases under the real monitor (`lfm-pack monitor`, the one that
travels in every pack), `--repeat` times each: the report's status/ended_by and how often the
classification was right. The monitor's rule: a fault-class signal (SEGV, BUS, FPE, ILL,
ABRT, TRAP, SYS) that the monitor neither sent nor forwarded is the task's own crash; other
signals are kills from outside. The one case the rule gets wrong is a fault-class signal sent
by another process straight to the task's pid (`kill -SEGV <task>`), which nothing schedulers
or people normally do; it is measured here too, so the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "segv (NULL read)": ("import ctypes; ctypes.string_at(0)", None),
    "bus (truncated mmap)": (
        "import mmap, tempfile\n"
        "f = tempfile.TemporaryFile(); f.truncate(4096)\n"
        "m = mmap.mmap(f.fileno(), 4096); f.truncate(0); m[0]",
        None,
    ),
    "abort()": ("import os; os.abort()", None),
    "kill -SEGV from outside": ("import time; time.sleep(30)", signal.SIGSEGV),
    "kill -ABRT from outside": ("import time; time.sleep(30)", signal.SIGABRT),
    "kill -KILL from outside": ("import time; time.sleep(30)", signal.SIGKILL),
    "kill -TERM from outside": ("import time; time.sleep(30)", signal.SIGTERM),
}
EXPECTED = {  # what a person would call it
    "segv (NULL read)": "crash",
    "bus (truncated mmap)": "crash",
    "abort()": "crash",
    "kill -SEGV from outside": "external",
    "kill -ABRT from outside": "external",
    "kill -KILL from outside": "external",
    "kill -TERM from outside": "external",
}


def kernel_view(code: str, sig: int | None, core: int, workdir: str) -> tuple[str, bool]:
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (core, core))

    proc = subprocess.Popen([sys.executable, "-c", code], preexec_fn=limits, cwd=workdir)
    if sig is not None:
        time.sleep(0.5)
        os.kill(proc.pid, sig)
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    assert info is not None
    si = {os.CLD_KILLED: "CLD_KILLED", os.CLD_DUMPED: "CLD_DUMPED"}.get(
        info.si_code, str(info.si_code)
    )
    _, status = os.waitpid(proc.pid, 0)
    return si, os.WCOREDUMP(status)


def lfm_view(code: str, sig: int | None, workdir: str) -> tuple[str, str, int]:
    rep = Path(workdir) / "r.json"
    pidfile = Path(workdir) / "pid"
    pidfile.unlink(missing_ok=True)
    wrapped = f"import os; open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n{code}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lfm_pack",
            "monitor",
            "--report",
            str(rep),
            "--",
            sys.executable,
            "-c",
            wrapped,
        ],
        cwd=workdir,
        stderr=subprocess.DEVNULL,
    )
    if sig is not None:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        os.kill(int(pidfile.read_text()), sig)
    proc.wait(timeout=60)
    r = json.loads(rep.read_text())
    return str(r["status"]), str(r["ended_by"]), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    load0 = os.getloadavg()
    print(f"command: python benchmarks/crash_origin.py --repeat {a.repeat}")
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    print(f"core_pattern: {core_pattern!r}\n")
    with tempfile.TemporaryDirectory() as tmp:
        print("| case | RLIMIT_CORE=0: si_code / WCOREDUMP | unlimited: si_code / WCOREDUMP |")
        print("|---|---|---|")
        for name, (code, sig) in CASES.items():
            cells = []
            for core in (0, resource.RLIM_INFINITY):
                si, dumped = kernel_view(code, sig, core, tmp)
                cells.append(f"{si} / {dumped}")
            print(f"| {name} | {cells[0]} | {cells[1]} |")
        for f in Path(tmp).glob("core*"):
            f.unlink()
        print()
        print("| case | lfm status / ended_by | exit code | right |")
        print("|---|---|---|---|")
        for name, (code, sig) in CASES.items():
            seen = [lfm_view(code, sig, tmp) for _ in range(a.repeat)]
            right = sum((st == "crashed") == (EXPECTED[name] == "crash") for st, _eb, _c in seen)
            kinds = sorted({f"{st} / {eb}" for st, eb, _c in seen})
            codes = sorted({c for _s, _e, c in seen})
            print(f"| {name} | {', '.join(kinds)} | {codes} | {right}/{a.repeat} |")
    load1 = os.getloadavg()
    print(f"\nload average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
