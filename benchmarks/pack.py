"""Benchmark `lfm-pack pack` against shipping the whole environment (issue 3).

Why: the point of packing one function's closure is that it is much smaller and faster to
build and stage than the whole environment (target: archive >= 5x smaller, pack >= 5x faster).

What it does, one run each:
1. pip: the ~60-requirement venv of benchmarks/analyze.py (numpy, scipy, pandas, scikit-learn,
   matplotlib, boto3, ... >= 150 distributions; built once by tests/envbuild.real_venv) and a job
   whose function uses numpy, scipy and pandas while its module imports boto3 at the top.
   Rows: `lfm-pack pack` (gzip default, and zstd), venv-pack of the whole venv (no interpreter
   inside!), plain `tar czf` and `tar | zstd -T0 -3` of the whole venv.
2. conda: a conda-style prefix built offline by tests/envbuild.conda_prefix with numpy, scipy,
   pandas and their dependencies as conda records (wheels unpacked), plus pure-python extras.
   Rows: `lfm-pack pack` vs conda-pack of the whole prefix (its default tar.gz, 1 thread, level
   4, and zstd with all threads).
For each row: wall time to build the archive, archive size, file count, and the time to extract
it with the system tar into a fresh directory. lfm-pack's time includes the analysis and the
hidden-prefix verification (--no-verify rows are also shown).

Run:  /work/.venv/bin/python benchmarks/pack.py [--json] [--skip-conda]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from analyze import TARGET_REQUIREMENTS  # noqa: E402
from envbuild import CondaPkgSpec, conda_prefix, real_venv, standard_conda_packages  # noqa: E402

LFM = [sys.executable, "-m", "lfm_pack"]

JOB = """\
import boto3
import numpy as np
import pandas as pd
from scipy import optimize


def simulate(n):
    x = np.linspace(0, 1, n)
    best = optimize.minimize_scalar(lambda a: float(((x - a) ** 2).sum()))
    return pd.DataFrame({"x": x}).describe().loc["mean", "x"] + best.x


def smooth(n):
    # the common case: a function that needs only numpy, in a module (and an env) with more
    x = np.random.default_rng(0).random(n)
    return float(np.convolve(x, np.ones(5) / 5, mode="valid").mean())


def upload(path):
    boto3.client("s3").upload_file(path, "bucket", path)
"""

CONDA_EXTRA_WHEELS = [
    "scipy==1.13.1",
    "pandas==2.2.2",
    "python-dateutil==2.9.0.post0",
    "pytz==2024.1",
    "tzdata==2024.1",
    "requests==2.32.3",
    "urllib3==2.2.2",
    "idna==3.7",
    "certifi==2024.7.4",
    "charset-normalizer==3.3.2",
    "six==1.16.0",
    "pyyaml==6.0.1",
    "jinja2==3.1.4",
    "markupsafe==2.1.5",
    "click==8.1.7",
    "rich==13.7.1",
    "pygments==2.18.0",
    "markdown-it-py==3.0.0",
    "mdurl==0.1.2",
    "attrs==23.2.0",
    "packaging==24.1",
    "tqdm==4.66.4",
    "sympy==1.13.0",
    "mpmath==1.3.0",
    "networkx==3.3",
    "toolz==0.12.1",
    "cloudpickle==3.0.0",
    "fsspec==2024.6.1",
    "joblib==1.4.2",
    "threadpoolctl==3.5.0",
    "scikit-learn==1.5.1",
]


def _files_and_bytes(root: Path) -> tuple[int, int]:
    n = total = 0
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            n += 1
            total += os.lstat(os.path.join(dirpath, fn)).st_size
    return n, total


def _extract(archive: Path) -> tuple[float, int]:
    dest = Path(tempfile.mkdtemp(prefix="bench-x-"))
    flag = (
        ["--zstd"]
        if archive.name.endswith(".zst")
        else (["-z"] if archive.name.endswith("gz") else [])
    )
    t = time.monotonic()
    subprocess.run(["tar", "-x", *flag, "-f", str(archive), "-C", str(dest)], check=True)
    dt = time.monotonic() - t
    n, _ = _files_and_bytes(dest)
    shutil.rmtree(dest)
    return dt, n


def _run(cmd: Sequence[str], cwd: Path | None = None, shell: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole child tree): CPU time stays comparable when
    other work shares the machine; wall time does not."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    proc = subprocess.run(
        cmd if not shell else " ".join(cmd), cwd=cwd, shell=shell, capture_output=True, text=True
    )
    dt = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dt, cpu


def _row(tool: str, timing: tuple[float, float], archive: Path) -> dict[str, Any]:
    seconds, cpu = timing
    ext_s, files = _extract(archive)
    return {
        "cpu_seconds": round(cpu, 2),
        "tool": tool,
        "seconds": round(seconds, 2),
        "bytes": archive.stat().st_size,
        "files": files,
        "extract_seconds": round(ext_s, 2),
    }


def bench_pip(work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    venv = real_venv(TARGET_REQUIREMENTS)
    tools = real_venv(["venv-pack==0.2.0"])
    proj = work / "proj"
    proj.mkdir()
    (proj / "job.py").write_text(JOB)
    rows = []
    for label, extra in (
        ("lfm-pack job.py:simulate (numpy+scipy+pandas; gzip, verified)", []),
        ("lfm-pack job.py:simulate (zstd, verified)", ["--compression", "zstd"]),
        ("lfm-pack job.py:simulate (gzip, --no-verify)", ["--no-verify"]),
        ("lfm-pack job.py:smooth (numpy only; gzip, verified)", ["@smooth"]),
    ):
        target = "job.py:smooth" if "@smooth" in extra else "job.py:simulate"
        extra = [e for e in extra if e != "@smooth"]
        out = work / f"lfm-{len(rows)}"
        dt = _run(
            [
                *LFM,
                "pack",
                "--python",
                str(venv / "bin" / "python"),
                target,
                "-o",
                str(out),
                *extra,
            ],
            cwd=proj,
        )
        (archive,) = [p for p in out.iterdir() if ".tar" in p.name]
        rows.append(_row(label, dt, archive))
    vp = work / "venv-pack.tar.gz"
    dt = _run([str(tools / "bin" / "venv-pack"), "-p", str(venv), "-o", str(vp), "-q"])
    rows.append(_row("venv-pack whole venv (no interpreter)", dt, vp))
    tgz = work / "venv.tar.gz"
    dt = _run(["tar", "-czf", str(tgz), "-C", str(venv), "."])
    rows.append(_row("tar czf whole venv (no interpreter)", dt, tgz))
    tzst = work / "venv.tar.zst"
    dt = _run(
        ["tar", "-cf", "-", "-C", str(venv), ".", "|", "zstd", "-q", "-T0", "-3", "-o", str(tzst)],
        shell=True,
    )
    rows.append(_row("tar | zstd -T0 -3 whole venv", dt, tzst))
    n, size = _files_and_bytes(venv)
    dists = len(list(venv.glob("lib/python3*/site-packages/*.dist-info")))
    return rows, {"env": str(venv), "files": n, "bytes": size, "distributions": dists}


CONDA_DEPENDS = {
    "scipy": ("numpy",),
    "pandas": ("numpy", "python-dateutil", "pytz", "tzdata"),
    "python-dateutil": ("six",),
    "requests": ("urllib3", "idna", "certifi", "charset-normalizer"),
    "jinja2": ("markupsafe",),
    "rich": ("pygments", "markdown-it-py"),
    "markdown-it-py": ("mdurl",),
    "sympy": ("mpmath",),
    "scikit-learn": ("numpy", "scipy", "joblib", "threadpoolctl"),
}


def conda_specs() -> list[CondaPkgSpec]:
    # the standard fixture's `six` is a stub; python-dateutil needs the real one
    specs = [s for s in standard_conda_packages() if s.name != "six"]
    for w in CONDA_EXTRA_WHEELS:
        name, version = w.split("==")
        deps = ("python", *CONDA_DEPENDS.get(name.lower(), ()))
        specs.append(CondaPkgSpec(name.lower(), version, "py_0", wheel=w, depends=deps))
    return specs


def bench_conda(work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    prefix = conda_prefix(
        None, conda_specs, name="bench-pack", key="v3", python_depends=("libffi >=3.4,<4.0a0",)
    )
    proj = work / "cproj"
    proj.mkdir()
    (proj / "job.py").write_text(JOB.replace("import boto3\n", "import sympy as boto3\n"))
    rows = []
    for label, extra in (
        ("lfm-pack (gzip, verified)", []),
        ("lfm-pack (zstd, verified)", ["--compression", "zstd"]),
    ):
        out = work / f"clfm-{len(rows)}"
        dt = _run(
            [*LFM, "pack", "--prefix", str(prefix), "job.py:simulate", "-o", str(out), *extra],
            cwd=proj,
        )
        (archive,) = [p for p in out.iterdir() if ".tar" in p.name]
        rows.append(_row(label, dt, archive))
    code = (
        "import sys, conda_pack; conda_pack.pack(prefix=sys.argv[1], output=sys.argv[2], "
        "n_threads=int(sys.argv[3]), force=True, ignore_missing_files=True)"
    )
    for label, name, threads in (
        ("conda-pack whole prefix (tar.gz)", "env.tar.gz", "1"),
        ("conda-pack whole prefix (tar.zst, -1 threads)", "env.tar.zst", "-1"),
    ):
        arch = work / name
        dt = _run([sys.executable, "-c", code, str(prefix), str(arch), threads])
        rows.append(_row(label, dt, arch))
    n, size = _files_and_bytes(prefix)
    return rows, {
        "env": str(prefix),
        "files": n,
        "bytes": size,
        "records": len(list((prefix / "conda-meta").glob("*.json"))),
    }


def table(title: str, rows: list[dict[str, Any]], env: dict[str, Any]) -> str:
    base = rows[0]
    lines = [
        f"### {title}",
        "",
        f"Environment: {env['files']} files, {env['bytes'] / 1e6:.0f} MB "
        + ", ".join(f"{k}={v}" for k, v in env.items() if k in ("distributions", "records")),
        "",
        "| tool | pack wall (s) | pack CPU (s) | archive (MB) | files | extract (s) "
        "| size vs lfm-pack | CPU vs lfm-pack |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{r['bytes'] / 1e6:.1f} | {r['files']} | {r['extract_seconds']:.2f} | "
            f"{r['bytes'] / base['bytes']:.1f}x | {r['cpu_seconds'] / base['cpu_seconds']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-conda", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    try:
        result: dict[str, Any] = {}
        rows, env = bench_pip(work)
        result["pip"] = {"rows": rows, "env": env}
        if not args.skip_conda:
            crows, cenv = bench_conda(work)
            result["conda"] = {"rows": crows, "env": cenv}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            table(
                "pip venv: job.py:simulate (numpy + scipy + pandas)",
                result["pip"]["rows"],
                result["pip"]["env"],
            )
        )
        if "conda" in result:
            print(table("conda prefix: same job", result["conda"]["rows"], result["conda"]["env"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
