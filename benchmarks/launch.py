"""Benchmark the launcher and the monitor (issue 4); prints a Markdown table.

  python benchmarks/launch.py [--runs 20]

- warm-cache overhead of `<name>-run` against calling the same function with the same
  interpreter directly (target <= 50 ms);
- the monitor's CPU overhead at its default interval (50 ms) over a 3 s idle task;
- peak-RSS accuracy on tree workloads against the known truth and against /usr/bin/time -v.
With `--launcher dist/<name>-run -- ARGS...` it also measures a real pack (e.g. a numpy/pandas
function packed by `lfm-pack pack`): cold start (sha256 + unpack + verify + first call, fresh
cache) and warm overhead against the packed interpreter calling the function directly.
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

from lfm_pack.launch.devpack import build_dev_pack
from lfm_pack.launch.runtime.lfm_runtime.__main__ import BOOT

RUNTIME = str(Path(__file__).parents[1] / "lfm_pack" / "launch" / "runtime")
MiB = 1024 * 1024
JOB = "def f(x):\n    return {'x': x}\n"

TREE = """
import os, time
pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        b = b"x" * (200 * 1024 * 1024)
        time.sleep(0.6)
        os._exit(0)
    pids.append(pid)
for p in pids:
    os.waitpid(p, 0)
"""
SPIKE = "import time\nb = b'x' * (500 * 1024 * 1024)\ntime.sleep(0.2)\ndel b\ntime.sleep(0.2)\n"
IDLE = "import time; time.sleep(0.8)"


def monitored_peak(code: str, py: str, tmp: Path, interval: str = "0.05") -> int:
    rep = tmp / "r.json"
    subprocess.run(
        [
            py,
            "-I",
            "-S",
            "-c",
            BOOT,
            RUNTIME,
            "monitor",
            "--interval",
            interval,
            "--report",
            str(rep),
            "--",
            py,
            "-c",
            code,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return int(json.loads(rep.read_text())["resources"]["memory_peak_bytes"])


def gnu_time_peak(code: str, py: str) -> int | None:
    if not shutil.which("time") and not os.path.exists("/usr/bin/time"):
        return None
    p = subprocess.run(["/usr/bin/time", "-v", py, "-c", code], capture_output=True, text=True)
    for line in p.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) * 1024
    return None


CPU: dict[str, float] = {}


def interleaved(a: list[str], b: list[str], runs: int) -> tuple[float, float]:
    """Medians of two commands run alternately (fair under a noisy, shared machine).

    Also records the mean CPU time (user+sys of every process) per run of each in CPU["a"],
    CPU["b"]: unlike wall time it hardly depends on what else the machine is doing.
    """
    ta: list[float] = []
    tb: list[float] = []
    cpu = {"a": 0.0, "b": 0.0}
    for _ in range(runs):
        for key, cmd, acc in (("a", a, ta), ("b", b, tb)):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
            acc.append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[key] += (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    CPU["a"], CPU["b"] = cpu["a"] / runs, cpu["b"] / runs
    return statistics.median(ta), statistics.median(tb)


def real_pack(launcher: str, args: list[str], runs: int, rows: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        cache = Path(d) / "c"
        cmd = [
            "sh",
            launcher,
            "--cache-dir",
            str(cache),
            "--report",
            str(Path(d) / "r.json"),
            "--",
            *args,
        ]
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        cold = time.perf_counter() - t
        rep = json.loads((Path(d) / "r.json").read_text())
        (env,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
        man = json.loads((env / ".lfm" / "manifest.json").read_text())
        tgt = man["targets"][0]
        py = str(env / man["python"]["executable"])
        paths = [str(env / a) for a in man["app_paths"]] + [str(env / ".lfm" / "runtime")]
        call = ", ".join(repr(json.loads(a)) for a in args)
        direct = [
            py,
            "-c",
            f"import sys, json; sys.path[:0] = {paths!r}; import {tgt['module']} as m; "
            f"print(json.dumps(m.{tgt['qualname']}({call})))",
        ]
        warm = ["sh", launcher, "--cache-dir", str(cache), "--", *args]
        td, tw = interleaved(direct, warm, runs)
        name = Path(launcher).name
        rows.append(
            (
                f"{name}: cold start (sha256 + unpack + verify + first call)",
                f"{cold * 1000:.0f} ms (unpack+verify {rep['timings'].get('unpack_s', 0) * 1000:.0f} ms)",
            )
        )
        rows.append(
            (f"{name}: direct call with the packed interpreter (median)", f"{td * 1000:.1f} ms")
        )
        rows.append((f"{name}: warm `-run` (median)", f"{tw * 1000:.1f} ms"))
        rows.append((f"{name}: **warm overhead**", f"**{(tw - td) * 1000:.1f} ms**"))
        rows.append(
            (f"{name}: warm overhead in CPU time", f"{(CPU['b'] - CPU['a']) * 1000:.1f} ms")
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument(
        "--python",
        default=os.path.realpath(sys.executable),
        help="base interpreter for the dev pack (default: the one behind this venv)",
    )
    ap.add_argument("--launcher", help="a real pack's <name>-run to measure as well")
    ap.add_argument("args", nargs="*", help="JSON arguments for --launcher's function")
    ns = ap.parse_args()
    py = ns.python
    rows: list[tuple[str, str]] = []
    if ns.launcher:
        real_pack(ns.launcher, ns.args, ns.runs, rows)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pk = build_dev_pack(
            tmp / "p",
            name="bench",
            python=py,
            app_files={"job.py": JOB},
            targets=[
                {
                    "raw": "job.py:f",
                    "kind": "file",
                    "module": "job",
                    "app_path": ".lfm/app/0/job.py",
                    "qualname": "f",
                }
            ],
        )
        cache = tmp / "c"
        t = time.perf_counter()
        subprocess.run(
            ["sh", str(pk.launcher), "--cache-dir", str(cache), "--", "1"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        rows.append(
            (
                "cold start, tiny dev pack (unpack + verify + first call)",
                f"{(time.perf_counter() - t) * 1000:.0f} ms",
            )
        )
        app = str(cache / pk.env_key / ".lfm" / "app" / "0")
        direct = [
            py,
            "-c",
            f"import sys, json; sys.path.insert(0, {app!r}); import job; print(json.dumps(job.f(1)))",
        ]
        warm = ["sh", str(pk.launcher), "--cache-dir", str(cache), "--", "1"]
        td, tw = interleaved(direct, warm, ns.runs)
        rows.append(("direct call, same interpreter (median)", f"{td * 1000:.1f} ms"))
        rows.append(("`<name>-run`, warm cache (median)", f"{tw * 1000:.1f} ms"))
        rows.append(("**warm overhead** (target <= 50 ms)", f"**{(tw - td) * 1000:.1f} ms**"))
        rows.append(
            ("warm overhead in CPU time (all processes)", f"{(CPU['b'] - CPU['a']) * 1000:.1f} ms")
        )

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [py, "-I", "-S", "-c", BOOT, RUNTIME, "monitor", "--", "sleep", "3"], check=True
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rows.append(
            (
                "monitor CPU over a 3 s idle task, 50 ms interval",
                f"{cpu * 1000:.0f} ms ({cpu / 3 * 100:.2f} % of one core)",
            )
        )

        base = monitored_peak(IDLE, py, tmp)
        for label, code, truth in (
            ("2 concurrent children x 200 MiB", TREE, 3 * base + 400 * MiB),
            ("one 500 MiB spike for 200 ms", SPIKE, base + 500 * MiB),
        ):
            ours = monitored_peak(code, py, tmp)
            one_hz = monitored_peak(code, py, tmp, interval="1.0")
            gt = gnu_time_peak(code, py)
            rows.append((f"{label}: truth (approx.)", f"{truth / MiB:.0f} MiB"))
            rows.append(
                (
                    f"{label}: lfm monitor (50 ms)",
                    f"{ours / MiB:.0f} MiB ({(ours - truth) / truth * 100:+.1f} %)",
                )
            )
            rows.append(
                (
                    f"{label}: lfm monitor at 1 s",
                    f"{one_hz / MiB:.0f} MiB ({(one_hz - truth) / truth * 100:+.1f} %)",
                )
            )
            if gt is not None:
                rows.append(
                    (
                        f"{label}: /usr/bin/time -v",
                        f"{gt / MiB:.0f} MiB ({(gt - truth) / truth * 100:+.1f} %)",
                    )
                )
    print("| measurement | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    load = os.getloadavg()[0]
    print(
        f"\n({os.cpu_count()} cores, load average {load:.1f} at the end, {sys.platform}, interpreter {py})"
    )


if __name__ == "__main__":
    main()
