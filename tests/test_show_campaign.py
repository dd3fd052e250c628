"""`lfm-pack show` over a campaign: many real reports from real launcher runs of a real pack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pythons import base_python

from lfm_pack.launch.devpack import build_dev_pack

LFM = str(Path(sys.executable).parent / "lfm-pack")
SH = shutil.which("dash") or "/bin/sh"

JOB = """
import time

def work(mb, fail=False):
    block = bytearray(mb * 1024 * 1024)
    time.sleep(0.05 + mb / 2000)
    if fail:
        raise ValueError("asked to fail")
    return len(block)

def other():
    return 1
"""

# (function, args, launcher options): 8 ok runs of growing size, one raising, one at a limit
RUNS = [
    *[("work", [str(mb)], []) for mb in (10, 20, 30, 40, 50, 60, 70, 80)],
    ("work", ["10", "true"], []),
    ("work", ["400"], ["--memory", "200M"]),
    ("other", [], []),
    ("other", [], []),
]


def _t(qualname: str) -> dict[str, object]:
    return {
        "raw": f"job.py:{qualname}",
        "kind": "file",
        "module": "job",
        "app_path": ".lfm/app/0/job.py",
        "qualname": qualname,
    }


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("campaign")
    pack = build_dev_pack(
        base / "pack",
        name="camp",
        python=base_python(),
        app_files={"job.py": JOB},
        targets=[_t("work"), _t("other")],
    )
    rdir = base / "reports"
    rdir.mkdir()
    env = dict(os.environ, LFM_REPORT_DIR=str(rdir))
    for func, args, opts in RUNS:
        launcher = [SH, str(pack.launcher), "--cache-dir", str(base / "cache")]
        p = subprocess.run(
            [*launcher, "--target", func, *opts, "--", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert p.returncode in (0, 81, 82), p.stderr
    assert len(list(rdir.glob("*.json"))) == len(RUNS)
    return rdir


def show(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LFM, "show", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_a_directory_gives_one_row_per_function(reports: Path) -> None:
    p = show(str(reports))
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert f"{len(RUNS)} runs, 2 function(s)" in p.stderr
    assert "job.py:work" in p.stderr and "job.py:other" in p.stderr


def test_summary_json_counts_statuses_and_percentiles(reports: Path) -> None:
    p = show(str(reports), "--summary", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["schema"] == "lfm-pack.campaign/1" and data["reports"] == len(RUNS)
    work = next(f for f in data["functions"] if f["category"] == "job.py:work")
    assert work["runs"] == 10
    assert work["statuses"] == {"ok": 8, "error": 1, "limit": 1}
    assert work["cache"]["known"] == 10 and work["cache"]["hits"] == 9  # first run extracted
    peaks = sorted(
        json.loads(f.read_text())["resources"]["memory_peak_bytes"]
        for f in reports.glob("*.json")
        if json.loads(f.read_text())["target"]["qualname"] == "work"
    )
    assert work["memory_peak_bytes"]["max"] == peaks[-1]
    assert work["memory_peak_bytes"]["p50"] == peaks[4]  # nearest rank: ceil(0.5 * 10) = 5th
    assert work["memory_peak_bytes"]["max"] >= 200 * 2**20  # the limited run's peak


def test_html_plot_needs_no_extra_and_draws_the_suggestion(reports: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.html"
    p = show(str(reports), "--plot", str(out))
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert page.count("<svg") == 5  # 2 histograms x 2 functions + the timeline
    assert "job.py:work" in page and "stroke-dasharray" in page  # the retry maximum
    assert not list(tmp_path.glob("*.tmp*"))


def test_png_plot_is_a_real_picture(reports: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image", reason="the PNG plot needs matplotlib")
    out = tmp_path / "c.png"
    p = show(str(reports), "--plot", str(out))
    assert p.returncode == 0, p.stderr
    pixels = image.imread(str(out))
    assert pixels.shape[0] > 400 and pixels.shape[1] > 600
    assert float(pixels.std()) > 0.05  # not blank
    assert not list(tmp_path.glob("*.tmp*"))


def test_png_without_matplotlib_is_one_line_and_a_usage_code(reports: Path, tmp_path: Path) -> None:
    # a Python that cannot import matplotlib: a package on the path whose import fails, as
    # it does for a user without the extra (ImportError at import time)
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    out = tmp_path / "c.png"
    p = show(str(reports), "--plot", str(out), env=env)
    assert p.returncode == 2 and "needs matplotlib" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_bad_files_in_a_campaign(reports: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(reports, mixed)
    (mixed / "truncated.json").write_text('{"schema": "lfm-pack.report/1", "stat')
    p = show(str(mixed))
    assert p.returncode == 9 and "--skip-bad" in p.stderr
    p = show(str(mixed), "--skip-bad", "--summary", "--json")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["reports"] == len(RUNS) and len(data["skipped"]) == 1
    p = show(str(tmp_path / "not-there"))
    assert p.returncode == 9 and "no such report file or directory" in p.stderr
    (tmp_path / "empty").mkdir()
    p = show(str(tmp_path / "empty"))
    assert p.returncode == 9 and "no reports found" in p.stderr


def test_unknown_plot_format_is_a_usage_error(reports: Path, tmp_path: Path) -> None:
    p = show(str(reports), "--plot", str(tmp_path / "c.svgz"))
    assert p.returncode == 2 and "unknown format" in p.stderr
