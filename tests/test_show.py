"""`lfm-pack show` on real reports written by the real monitor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lfm_pack.launch.render import sparkline

LFM = str(Path(sys.executable).parent / "lfm-pack")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rep = tmp_path_factory.mktemp("show") / "r.json"
    code = "import time; b = b'x' * (80 * 1024 * 1024); time.sleep(0.3)"
    p = subprocess.run(
        [LFM, "monitor", "--report", str(rep), "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return rep


def test_show_renders_summary_and_sparklines(report: Path) -> None:
    p = subprocess.run([LFM, "show", str(report)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == ""
    assert "memory (tree)" in p.stderr and "MiB" in p.stderr
    assert any(ch in p.stderr for ch in "▅▆▇█")


def test_show_json_is_the_product_on_stdout(report: Path) -> None:
    p = subprocess.run([LFM, "show", "--json", str(report)], capture_output=True, text=True)
    (data,) = json.loads(p.stdout)
    assert data["schema"] == "lfm-pack.report/1" and "series" not in data
    assert data["resources"]["memory_peak_bytes"] >= 80 * 1024 * 1024


def test_show_rejects_a_non_report(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": "other"}')
    p = subprocess.run([LFM, "show", str(bad)], capture_output=True, text=True)
    assert p.returncode == 9 and "not an lfm-pack.report/1 report" in p.stderr


def test_plot_needs_matplotlib_or_writes_png(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    p = subprocess.run(
        [LFM, "show", str(report), "--plot", str(png)], capture_output=True, text=True
    )
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert p.returncode != 0 and "needs matplotlib" in p.stderr
    else:
        assert p.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_sparkline_shape() -> None:
    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert len(sparkline([float(i) for i in range(1000)], width=40)) == 40
