"""Warm mode vs one launcher per call (issue 5 item 7); prints a Markdown table.

  python benchmarks/warm.py [--calls 1000] [--launcher-calls N] [--launcher dist/x-run]

Packs a short numpy-importing function with `lfm-pack pack` (unless --launcher is given; its
target must accept one int), warms the node cache once, then in ONE run:

- `launcher per call`: `<name>-run --cache-dir C -- I` for each call, one after another
  (interpreter start + `import numpy` + monitor every time);
- `warm, sequential`: one `--serve` server, each call sent after the previous result came back
  (the latency a caller sees; every call still forked, measured, limited and reported);
- `warm, pipelined (slots 1|2)`: all calls written at once through `WarmServer.map`.

Latency (p50/p95): launcher and warm sequential are measured by the client around each call
(process start to exit; request written to result read). For the pipelined rows, where a
client-side figure would be mostly queueing, it is the server-side time of each call (fork of
its monitor to its report, from the report's timings: total_s - queue_s).
`CPU ms/call` is the CPU time of every process the mode started (RUSAGE_CHILDREN; for warm
mode the server, its call monitors and tasks, and its one-time import), divided by the calls:
unlike wall times it barely depends on what else runs on the machine.
Target: warm throughput >= 10x launcher-per-call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lfm_pack.launch.warm import WarmServer

FUNC = """
import numpy as np


def tiny(n):
    return float(np.arange(int(n) % 100 + 1).sum())
"""


def pack(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    (src / "job.py").write_text(FUNC)
    exe = Path(sys.executable).parent / "lfm-pack"
    cmd = [str(exe), "pack", f"{src / 'job.py'}:tiny", "-o", str(tmp / "dist"), "--no-verify"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=src)
    runs = sorted((tmp / "dist").glob("*-run"))
    if not runs:
        raise SystemExit("lfm-pack pack wrote no launcher")
    return runs[0]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def row(name: str, lat: list[float], total: float, cpu: float) -> dict[str, float | str | int]:
    return {
        "mode": name,
        "calls": len(lat),
        "total_s": round(total, 2),
        "calls_per_s": round(len(lat) / total, 1),
        "p50_ms": round(1000 * statistics.median(lat), 2),
        "p95_ms": round(1000 * pct(lat, 0.95), 2),
        "cpu_ms_per_call": round(1000 * cpu / len(lat), 2),
    }


def per_launcher(launcher: Path, cache: Path, n: int, sh: str) -> dict[str, float | str | int]:
    lat: list[float] = []
    c0 = children_cpu()
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        proc = subprocess.run(
            [sh, str(launcher), "--cache-dir", str(cache), "--", str(i)],
            capture_output=True,
            check=False,
        )
        lat.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"launcher call {i} failed: {proc.stderr.decode()[-500:]}")
    return row("launcher per call", lat, time.perf_counter() - t0, children_cpu() - c0)


def warm_sequential(launcher: Path, cache: Path, n: int, sh: str) -> dict[str, float | str | int]:
    lat: list[float] = []
    c0 = children_cpu()
    with WarmServer(launcher, cache_dir=cache, sh=sh) as srv:
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            res = srv.call_result(i)
            lat.append(time.perf_counter() - t)
            if not res.ok:
                raise SystemExit(f"warm call {i} failed: {res.error}")
        total = time.perf_counter() - t0
    return row("warm, sequential", lat, total, children_cpu() - c0)


def warm_pipelined(
    launcher: Path, cache: Path, n: int, sh: str, slots: int
) -> dict[str, float | str | int]:
    c0 = children_cpu()
    with WarmServer(launcher, cache_dir=cache, sh=sh, slots=slots) as srv:
        t0 = time.perf_counter()
        ids = [srv.submit([i]) for i in range(n)]
        lat = []
        for cid in ids:
            res = srv.result(cid)
            if not res.ok or res.report is None:
                raise SystemExit(f"warm call {cid} failed: {res.error}")
            t = res.report["timings"]
            lat.append(t["total_s"] - t["queue_s"])
        total = time.perf_counter() - t0
    return row(f"warm, pipelined (slots {slots})", lat, total, children_cpu() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--launcher-calls", type=int, default=None, help="default: --calls")
    ap.add_argument("--launcher", type=Path, help="an existing <name>-run (one int argument)")
    ap.add_argument("--json", action="store_true")
    ns = ap.parse_args()
    sh = shutil.which("dash") or "/bin/sh"
    with tempfile.TemporaryDirectory(prefix="lfm-warm-bench-") as d:
        tmp = Path(d)
        launcher = ns.launcher or pack(tmp)
        cache = tmp / "cache"
        subprocess.run(
            [sh, str(launcher), "--cache-dir", str(cache), "--", "1"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows = [
            per_launcher(launcher, cache, ns.launcher_calls or ns.calls, sh),
            warm_sequential(launcher, cache, ns.calls, sh),
            warm_pipelined(launcher, cache, ns.calls, sh, 1),
            warm_pipelined(launcher, cache, ns.calls, sh, 2),
        ]
    base = float(rows[0]["calls_per_s"])
    for r in rows:
        r["speedup"] = round(float(r["calls_per_s"]) / base, 1)
    if ns.json:
        print(json.dumps({"cpus": os.cpu_count(), "load": os.getloadavg(), "rows": rows}, indent=2))
        return
    print(f"cpus={os.cpu_count()} loadavg={' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| mode | calls | total s | calls/s | p50 ms | p95 ms | CPU ms/call | vs launcher |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            "| {mode} | {calls} | {total_s} | {calls_per_s} | {p50_ms} | {p95_ms} "
            "| {cpu_ms_per_call} | {speedup}x |".format(**r)
        )


if __name__ == "__main__":
    main()
