"""Benchmark `lfm-pack analyze FILE:func` against pipreqs and fawltydeps on the same file.

Why: the analyzer is the front door of every lfm-pack command and runs on login nodes; it
must stay interactive (< 0.5 s warm) in a realistic environment of >= 150 distributions, and
it must not be slower than the per-file peers while doing more (per-function reachability,
file ownership, a pinned closure).

What it does:
1. builds (once, cached by tests/envbuild.real_venv) a target venv with ~150 real
   distributions from PyPI (numpy/scipy/pandas/scikit-learn/matplotlib + popular pure-python
   packages), and one venv each for pipreqs and fawltydeps;
2. writes a realistic job file (a function using numpy, pandas, yaml, requests, a helper
   using sklearn and PIL, and an unrelated function importing boto3 it must not count);
3. times each tool as a subprocess: cold = first run with an empty XDG cache directory
   (lfm-pack's reach and index caches live there; the peers keep none; Python's bytecode
   caches of the tools stay, as on a real machine), warm = median of N further runs; a
   last row times `import lfm_pack.cli` alone (start-up cost before any analysis);
4. prints a table (and `--json` for docs/benchmarks.md).

Run:  /work/.venv/bin/python benchmarks/analyze.py [-n 7] [--json]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from envbuild import real_venv  # noqa: E402

# ~60 top-level requirements that pull in >= 150 distributions in total.
TARGET_REQUIREMENTS = [
    "numpy==1.26.4",
    "scipy==1.13.1",
    "pandas==2.2.2",
    "scikit-learn==1.5.1",
    "matplotlib==3.9.1",
    "pillow==10.4.0",
    "opencv-python-headless==4.10.0.84",
    "requests==2.32.3",
    "httpx==0.27.0",
    "aiohttp==3.9.5",
    "pyyaml==6.0.1",
    "beautifulsoup4==4.12.3",
    "lxml==5.2.2",
    "attrs==23.2.0",
    "python-dateutil==2.9.0.post0",
    "protobuf==4.25.3",
    "googleapis-common-protos==1.63.2",
    "boto3==1.34.144",
    "sqlalchemy==2.0.31",
    "pydantic==2.8.2",
    "flask==3.0.3",
    "jinja2==3.1.4",
    "click==8.1.7",
    "rich==13.7.1",
    "tqdm==4.66.4",
    "sympy==1.13.0",
    "networkx==3.3",
    "jsonschema==4.23.0",
    "sphinx==7.4.7",
    "pytest==8.2.2",
    "hypothesis==6.108.2",
    "black==24.4.2",
    "isort==5.13.2",
    "tomlkit==0.13.0",
    "toml==0.10.2",
    "simplejson==3.19.2",
    "ujson==5.10.0",
    "orjson==3.10.6",
    "msgpack==1.0.8",
    "psutil==6.0.0",
    "wrapt==1.16.0",
    "deprecated==1.2.14",
    "tenacity==8.5.0",
    "cachetools==5.4.0",
    "more-itertools==10.3.0",
    "openpyxl==3.1.5",
    "tabulate==0.9.0",
    "termcolor==2.4.0",
    "colorama==0.4.6",
    "humanize==4.10.0",
    "arrow==1.3.0",
    "python-slugify==8.0.4",
    "markdown==3.6",
    "pyjwt==2.8.0",
    "cryptography==43.0.0",
    "paramiko==3.4.0",
    "regex==2024.5.15",
    "gitpython==3.1.43",
    "ipython==8.26.0",
    "dask==2024.7.0",
    "xarray==2024.6.0",
    "seaborn==0.13.2",
    "statsmodels==0.14.2",
    "fsspec==2024.6.1",
    "cloudpickle==3.0.0",
    "toolz==0.12.1",
    "filelock==3.15.4",
    "platformdirs==4.2.2",
    "docutils==0.21.2",
    "nbformat==5.10.4",
    "tornado==6.4.1",
    "pyzmq==26.0.3",
    "setuptools==71.0.0",
]

JOB = '''\
"""A realistic analysis job: one function is packed, the others must not count."""
import json
import os

import numpy as np
import pandas as pd
import requests
import yaml

from helpers import load_image, fit


def simulate(config_path: str, url: str) -> dict:
    with open(config_path) as fh:
        cfg = yaml.safe_load(fh)
    data = np.random.default_rng(cfg["seed"]).normal(size=(cfg["n"], 3))
    frame = pd.DataFrame(data, columns=["a", "b", "c"])
    meta = requests.get(url, timeout=5).json()
    img = load_image(cfg["image"])
    model = fit(frame.values, frame["a"].values > 0)
    return {"mean": float(frame.mean().mean()), "meta": meta, "shape": img.size,
            "score": model.score(frame.values, frame["a"].values > 0),
            "cwd": os.getcwd(), "cfg": json.dumps(cfg)}


def upload(path: str) -> None:
    import boto3

    boto3.client("s3").upload_file(path, "bucket", os.path.basename(path))
'''

HELPERS = """\
from PIL import Image

try:
    import ujson as fastjson
except ImportError:
    import json as fastjson


def load_image(path):
    return Image.open(path)


def fit(x, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(x, y)


def dump(obj):
    return fastjson.dumps(obj)
"""

LFM_PACK = Path(sys.executable).with_name("lfm-pack")


def count_dists(root: Path) -> int:
    sites = list(root.glob("lib/python3*/site-packages"))
    return sum(1 for s in sites for p in s.iterdir() if p.name.endswith(".dist-info"))


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str]
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """(wall s, CPU s of the child tree, result). CPU time barely moves when other jobs share
    the cores, so it is the fairer comparison on a busy machine; wall time is what users see."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=7, help="warm runs per tool (median reported)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--build-only", action="store_true", help="only build the cached venvs")
    args = ap.parse_args()

    target = real_venv(TARGET_REQUIREMENTS)
    pipreqs = real_venv(["pipreqs==0.5.0"])
    fawlty = real_venv(["fawltydeps==0.19.0"])
    n_dists = count_dists(target)
    print(f"target env: {target} ({n_dists} distributions)", file=sys.stderr)
    if args.build_only:
        return 0

    work = Path(tempfile.mkdtemp(prefix="lfm-bench-"))
    proj = work / "proj"
    proj.mkdir()
    (proj / "job.py").write_text(JOB)
    (proj / "helpers.py").write_text(HELPERS)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    (proj / "requirements.txt").write_text("")  # fawltydeps: nothing declared -> lists all
    pipreqs_site = next((pipreqs / "lib").glob("python3*/site-packages"))
    # pipreqs maps names with its own interpreter's sys.path; run it on the target interpreter
    # (its own packages appended after the target's) so both tools see the same environment.
    pipreqs_main = (
        f"import sys; sys.path.append({str(pipreqs_site)!r}); sys.argv[0] = 'pipreqs';"
        " from pipreqs import pipreqs; pipreqs.main()"
    )
    tools = {
        "lfm-pack analyze job.py:simulate": [
            str(LFM_PACK),
            "analyze",
            "--python",
            str(target / "bin" / "python"),
            "job.py:simulate",
            "--json",
        ],
        "pipreqs --use-local (whole dir)": [
            str(target / "bin" / "python"),
            "-c",
            pipreqs_main,
            "--use-local",
            "--print",
            str(proj),
        ],
        "fawltydeps --list-imports": [
            str(fawlty / "bin" / "fawltydeps"),
            "--list-imports",
            "--detailed",
            "--code",
            "job.py",
            "helpers.py",
        ],
        "fawltydeps --check-undeclared --pyenv": [
            str(fawlty / "bin" / "fawltydeps"),
            "--check-undeclared",
            "--detailed",
            "--code",
            "job.py",
            "helpers.py",
            "--deps",
            "requirements.txt",
            "--pyenv",
            str(target),
        ],
    }
    # breakdown: the CLI's start-up alone, and the analyze command without the click group
    # (i.e. what `lfm-pack analyze` costs once the group imports subcommands lazily)
    tools["(lfm-pack CLI start-up: import lfm_pack.cli)"] = [
        sys.executable,
        "-c",
        "import lfm_pack.cli",
    ]
    direct = (
        "import sys; from lfm_pack.commands.analyze import command;"
        " command(sys.argv[1:], prog_name='lfm-pack analyze')"
    )
    tools["(analyze command alone, no CLI group)"] = [
        sys.executable,
        "-c",
        direct,
        "--python",
        str(target / "bin" / "python"),
        "job.py:simulate",
        "--json",
    ]
    results: list[dict[str, object]] = []
    for n, (label, cmd) in enumerate(tools.items()):
        # cold: an empty XDG cache (lfm-pack's reach + index caches; the peers keep none)
        env = {**base_env, "XDG_CACHE_HOME": str(work / f"xdg{n}")}
        cold, cold_cpu, proc = timed(cmd, proj, env)
        warm: list[float] = []
        warm_cpu: list[float] = []
        for _ in range(args.n):
            t, c, proc = timed(cmd, proj, env)
            warm.append(t)
            warm_cpu.append(c)
        results.append(
            {
                "tool": label,
                "cold_s": round(cold, 3),
                "warm_median_s": round(statistics.median(warm), 3),
                "warm_min_s": round(min(warm), 3),
                "cold_cpu_s": round(cold_cpu, 3),
                "warm_cpu_median_s": round(statistics.median(warm_cpu), 3),
                "exit": proc.returncode,
                "command": " ".join(cmd),
                "output_head": (proc.stdout or proc.stderr)[:400],
            }
        )
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"distributions": n_dists, "runs": args.n, "results": results}, indent=2))
    width = max(len(str(r["tool"])) for r in results)
    print(
        f"\n{n_dists} distributions in the target env; median of {args.n} warm runs\n",
        file=sys.stderr,
    )
    load = os.getloadavg()[0]
    print(f"(1-min load average at the end: {load:.2f} on {os.cpu_count()} cores)", file=sys.stderr)
    print(
        f"{'tool':<{width}}  {'cold (s)':>9}  {'warm (s)':>9}  {'cold cpu':>9}  {'warm cpu':>9}  exit",
        file=sys.stderr,
    )
    for r in results:
        print(
            f"{r['tool']:<{width}}  {r['cold_s']:>9.3f}  {r['warm_median_s']:>9.3f}"
            f"  {r['cold_cpu_s']:>9.3f}  {r['warm_cpu_median_s']:>9.3f}  {r['exit']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
