"""Sizing: Tovar et al.'s first-allocation policies (hand-computed) and `lfm-pack suggest`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lfm_pack.errors import InputFileError
from lfm_pack.scale.policies import (
    bucket_end,
    build_histogram,
    expected_throughput,
    expected_waste,
    first_allocation,
    max_seen,
)
from lfm_pack.scale.reports import load_report, load_reports
from lfm_pack.scale.sizes import MIB, SizeError, hms, parse_duration, parse_size
from lfm_pack.scale.suggest import (
    htcondor_lines,
    parsl_spec,
    slurm_flags,
    suggest,
    suggest_category,
    whole_cores,
)

# ---- the policies, checked against numbers worked out by hand -------------------------------


def test_buckets_are_start_exclusive_end_inclusive() -> None:
    assert bucket_end(0, 250) == 0
    assert bucket_end(1, 250) == 250
    assert bucket_end(250, 250) == 250
    assert bucket_end(251, 250) == 500


def test_max_adds_a_third_of_a_bucket_before_rounding_up() -> None:
    assert max_seen(build_histogram([(160, 1.0)], 250)) == 250  # 160 + 83 = 243 -> 250
    assert max_seen(build_histogram([(170, 1.0)], 250)) == 500  # 170 + 83 = 253 -> 500
    assert max_seen(build_histogram([(3, 1.0)], 1)) == 3  # cores: floor(1/3) = 0


def test_few_large_tasks_get_a_small_first_allocation() -> None:
    # 9 tasks at 100 MB, 1 at 1000 MB, 10 s each; buckets 250 -> keys 250 and 1000.
    h = build_histogram([(100, 10.0)] * 9 + [(1000, 10.0)], 250)
    assert h.keys == (250, 1000) and h.counts == (9, 1)
    a_m = max_seen(h)
    assert a_m == 1250  # 1000 + 83 -> 1250
    # tau = 10, tail(250) = 10/10 = 1, tail(1000) = 0
    assert expected_waste(h, 0, a_m) == pytest.approx(250 * 10 + 1250 * 1)  # 3750
    assert expected_waste(h, 1, a_m) == pytest.approx(1000 * 10)
    assert expected_throughput(h, 0, a_m) == pytest.approx((9 * 1250 / 250 + 1) / 11)
    assert expected_throughput(h, 1, a_m) == pytest.approx(10 * 1250 / 1000 / 10)
    assert first_allocation(h, "min-waste") == 250
    assert first_allocation(h, "max-throughput") == 250
    assert first_allocation(h, "max") == 1250


def test_mostly_large_tasks_get_the_large_allocation() -> None:
    # 1 task at 200 MB, 9 at 900 MB: retrying 90% of tasks costs more than it saves.
    h = build_histogram([(200, 10.0)] + [(900, 10.0)] * 9, 250)
    a_m = max_seen(h)
    assert a_m == 1000
    assert expected_waste(h, 0, a_m) == pytest.approx(250 * 10 + 1000 * 9)  # 11500 > 10000
    assert first_allocation(h, "min-waste") == 1000
    assert expected_throughput(h, 0, a_m) == pytest.approx((1000 / 250 + 9) / 19)  # 0.68 < 1
    assert first_allocation(h, "max-throughput") == 1000


def test_long_running_small_tasks_shift_the_choice() -> None:
    # Half the tasks small but short, half large and long: min-waste weighs time.
    h = build_histogram([(100, 1.0)] * 5 + [(1000, 100.0)] * 5, 250)
    assert max_seen(h) == 1250
    # tau = 50.5, tail(250) = 50: E(250) = 250*50.5 + 1250*50 > E(1000) = 1000*50.5
    assert first_allocation(h, "min-waste") == 1000
    # swap the times: the large tasks are now short, so retrying them costs little
    # tau = 50.5, tail(250) = 0.5: E(250) = 250*50.5 + 1250*0.5 < E(1000)
    h2 = build_histogram([(100, 100.0)] * 5 + [(1000, 1.0)] * 5, 250)
    assert first_allocation(h2, "min-waste") == 250


# ---- reports -> suggestions ------------------------------------------------------------------


def report(path: Path, mem_mib: float, wall: float = 30.0, **extra: object) -> Path:
    data: dict[str, object] = {
        "schema": "lfm-pack.report/1",
        "status": "ok",
        "exit_code": 0,
        "target": "job.py:simulate",
        "resources": {
            "wall_time_s": wall,
            "cpu_time_s": wall,
            "memory_peak_bytes": int(mem_mib * MIB),
            "cores_peak": 1.02,
        },
        "limits_exceeded": {},
    }
    data.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture()
def reports(tmp_path: Path) -> Path:
    d = tmp_path / "reports"
    for i in range(18):
        report(d / f"simulate-{i}.json", 300 + i)
    report(d / "simulate-18.json", 3000, wall=100.0)
    report(d / "simulate-19.json", 3100, wall=100.0)
    report(d / "sub" / "other-0.json", 50, target="job.py:other", category="postprocess")
    return d


def test_suggest_groups_by_category_and_applies_each_policy(reports: Path) -> None:
    loaded = load_reports([str(reports)])
    assert len(loaded.measurements) == 21
    items = {(s.name, s.policy): s for s in suggest(loaded.measurements, ("max", "max-throughput"))}
    assert set(items) == {
        ("job.py:simulate", "max"),
        ("job.py:simulate", "max-throughput"),
        ("postprocess", "max"),
        ("postprocess", "max-throughput"),
    }
    mx = items[("job.py:simulate", "max")]
    assert mx.memory_bytes == 3250 * MIB  # 3100 + 83 -> 3250
    mt = items[("job.py:simulate", "max-throughput")]
    assert mt.memory_bytes == 500 * MIB and mt.max_memory_bytes == 3250 * MIB
    assert mt.cores == 1  # 1.02 is sampling noise, not a second core
    assert mt.wall_time_s == 180  # 100 s x 1.5 -> 3 min
    assert mt.tasks_seen == 20 and mt.disk_bytes is None


def test_limit_reports_raise_the_max_only(tmp_path: Path) -> None:
    for i in range(10):
        report(tmp_path / f"ok-{i}.json", 200)
    report(
        tmp_path / "killed.json",
        900,
        status="limit",
        limits_exceeded={"memory": {"limit": 1000 * MIB, "seen": 1100 * MIB}},
    )
    report(tmp_path / "lost.json", 5000, status="infrastructure")
    ms = load_reports([str(tmp_path)]).measurements
    s = suggest_category("job.py:simulate", ms, "max-throughput")
    assert s.tasks_seen == 10 and s.limited == 1 and s.ignored == 1
    assert s.memory_bytes == 250 * MIB
    assert s.max_memory_bytes == 1250 * MIB  # 1100 (seen at the kill) + 83 -> 1250


def test_flags_for_schedulers(reports: Path) -> None:
    ms = load_reports([str(reports)]).measurements
    (s,) = suggest([m for m in ms if m.category == "job.py:simulate"], ("max",))
    assert slurm_flags(s) == ["--mem=3250M", "--cpus-per-task=1", "--time=00:03:00"]
    assert htcondor_lines(s) == ["request_memory = 3250MB", "request_cpus = 1"]
    assert parsl_spec(s) == {"cores": 1, "memory": 3250, "running_time_min": 3}


def test_bad_reports_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "lfm-pack.report/1", "status": "ok"')
    with pytest.raises(InputFileError, match=r"bad\.json: not valid JSON"):
        load_report(bad)
    other = report(tmp_path / "other.json", 10, schema="something/2")
    with pytest.raises(InputFileError, match=r"other\.json: schema 'something/2'"):
        load_report(other)
    nores = tmp_path / "nores.json"
    nores.write_text(json.dumps({"schema": "lfm-pack.report/1", "status": "ok", "target": "x"}))
    with pytest.raises(InputFileError, match="no resources"):
        load_report(nores)


def test_sizes_and_durations() -> None:
    assert parse_size("250M") == 250 * MIB
    assert parse_size("1.5G") == 1536 * MIB
    assert parse_size("100") == 100
    assert parse_size("2GiB") == 2048 * MIB
    assert parse_size("2GB") == 2 * 1000**3  # decimal, as the launcher reads it
    with pytest.raises(SizeError):
        parse_size("lots")
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1-02:00:00") == 93600
    assert parse_duration("05:30") == 330
    assert hms(93601) == "1-02:00:01"
    assert whole_cores(0.3) == 1 and whole_cores(1.05) == 1 and whole_cores(1.5) == 2


# ---- the command -----------------------------------------------------------------------------


def lfm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_json_keys(reports: Path) -> None:
    proc = lfm("suggest", str(reports), "--policy", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert len(data["categories"]) == 6
    for c in data["categories"]:
        assert {
            "name",
            "policy",
            "memory_bytes",
            "cores",
            "wall_time_s",
            "disk_bytes",
            "tasks_seen",
        } <= set(c)
    assert "Suggested first allocations" in proc.stderr  # the table goes to stderr


def test_cli_formats(reports: Path) -> None:
    proc = lfm("suggest", str(reports), "--category", "job.py:simulate", "--format", "slurm")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "--mem=500M --cpus-per-task=1 --time=00:03:00"
    proc = lfm(
        "suggest",
        str(reports),
        "--category",
        "job.py:simulate",
        "--format",
        "htcondor",
        "--policy",
        "max",
    )
    assert proc.stdout.splitlines() == ["request_memory = 3250MB", "request_cpus = 1"]
    proc = lfm("suggest", str(reports), "--format", "parsl")
    specs = json.loads(proc.stdout)
    assert specs["job.py:simulate (max-throughput)"]["memory"] == 500
    assert specs["postprocess (max-throughput)"]["memory"] == 250
    proc = lfm(
        "suggest",
        str(reports),
        "--bucket-memory",
        "100M",
        "--category",
        "job.py:simulate",
        "--json",
    )
    (c,) = json.loads(proc.stdout)["categories"]
    assert c["memory_bytes"] == 400 * MIB  # 300..317 MiB fall in the (300, 400] bucket


def test_slurm_format_with_several_functions_asks_which(reports: Path) -> None:
    """`sbatch $(... --format slurm)` must never receive labels or several flag sets."""
    proc = lfm("suggest", str(reports), "--format", "slurm")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--format slurm needs one function and one policy" in proc.stderr
    assert "--category" in proc.stderr and "Traceback" not in proc.stderr
    proc = lfm("suggest", str(reports), "--category", "job.py:simulate", "--policy", "all")
    assert proc.returncode == 0  # the table of three policies is fine without --format
    args = ("--category", "job.py:simulate", "--policy", "all", "--format", "slurm")
    assert lfm("suggest", str(reports), *args).returncode == 2


def test_cli_bad_report_fails_in_one_line_or_is_skipped(reports: Path) -> None:
    (reports / "zz-truncated.json").write_text('{"schema": "lfm-pack.rep')
    proc = lfm("suggest", str(reports))
    assert proc.returncode == 9
    assert "zz-truncated.json: not valid JSON" in proc.stderr and "Traceback" not in proc.stderr
    proc = lfm("suggest", str(reports), "--skip-bad", "--json")
    assert proc.returncode == 0
    assert "warning" in proc.stderr and "zz-truncated.json" in proc.stderr
    assert json.loads(proc.stdout)["skipped"][0]["path"].endswith("zz-truncated.json")
    proc = lfm("suggest", str(reports), "--skip-bad", "--category", "nope")
    assert proc.returncode == 9 and "categories seen" in proc.stderr


def test_suggest_reads_reports_written_by_the_real_monitor(tmp_path: Path) -> None:
    """The launcher/monitor writes `target` as an object; suggest must group by it."""
    reports = tmp_path / "reports"
    reports.mkdir()
    for i, size in enumerate((40_000_000, 90_000_000)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "lfm_pack",
                "monitor",
                "--report",
                str(reports / f"r{i}.json"),
                "--",
                sys.executable,
                "-c",
                f"x = bytearray({size}); import time; time.sleep(0.3)",
            ],
            check=True,
        )
    out = subprocess.run(
        [sys.executable, "-m", "lfm_pack", "suggest", str(reports), "--json", "--policy", "max"],
        check=True,
        capture_output=True,
        text=True,
    )
    cats = json.loads(out.stdout)["categories"]
    assert len(cats) == 2  # two different commands -> two categories
    assert all(c["tasks_seen"] == 1 for c in cats)
    assert all(c["memory_bytes"] >= 250 * 2**20 for c in cats)
    assert {c["name"].split()[-1].startswith("x") or "bytearray" in c["name"] for c in cats} == {
        True
    }
