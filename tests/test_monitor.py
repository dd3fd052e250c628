"""The runtime monitor on real process trees: accuracy, limits, killing, signals, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lfm_pack.launch.runtime.lfm_runtime.__main__ import BOOT
from lfm_pack.launch.runtime.lfm_runtime.report import to_rmonitor

RUNTIME = str(Path(__file__).parents[1] / "lfm_pack" / "launch" / "runtime")
MiB = 1024 * 1024
PY = sys.executable


def monitor_cmd(report: Path, *opts: str) -> list[str]:
    return [PY, "-I", "-S", "-c", BOOT, RUNTIME, "monitor", "--report", str(report), *opts, "--"]


def run_monitored(tmp_path: Path, code: str, *opts: str, timeout: float = 60) -> tuple[int, dict]:
    rep = tmp_path / "r.json"
    proc = subprocess.run(
        [*monitor_cmd(rep, *opts), PY, "-c", code], timeout=timeout, capture_output=True, text=True
    )
    return proc.returncode, json.loads(rep.read_text())


def procs_with_token(token: str) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if token.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    out.append(int(name))
            except OSError:
                pass
    return out


SPIKE = """
import time
time.sleep(0.3)
b = b"x" * (500 * 1024 * 1024)
time.sleep(0.2)
del b
time.sleep(0.3)
"""


def test_500mb_spike_of_200ms_is_measured_within_10_percent(tmp_path: Path) -> None:
    _, base = run_monitored(tmp_path, "import time; time.sleep(0.8)")
    code, rep = run_monitored(tmp_path, SPIKE)
    assert code == 0 and rep["status"] == "ok"
    res = rep["resources"]
    baseline = base["resources"]["memory_peak_bytes"]
    truth = baseline + 500 * MiB
    # the sampled tree peak (not only wait4's exact per-process value) must see the spike
    assert abs(res["memory_peak_sampled_bytes"] - truth) <= 0.1 * 500 * MiB, res
    assert abs(res["memory_peak_bytes"] - truth) <= 0.1 * 500 * MiB
    assert 0.3 <= res["peak_times_s"]["memory"] <= res["wall_time_s"]
    assert max(rep["series"]["memory_bytes"]) >= 450 * MiB


TWO_CHILDREN = """
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


@pytest.mark.parametrize("walk", ["children-files", "proc-scan"])
def test_two_concurrent_200mb_children_are_summed(tmp_path: Path, walk: str) -> None:
    opts = ("--no-children-files",) if walk == "proc-scan" else ()
    code, rep = run_monitored(tmp_path, TWO_CHILDREN, *opts)
    assert code == 0
    res = rep["resources"]
    assert res["memory_peak_bytes"] >= 400 * MiB, res
    assert res["memory_peak_bytes"] <= 400 * MiB + 80 * MiB
    assert (
        200 * MiB <= res["memory_peak_process_bytes"] < 300 * MiB
    )  # wait4: largest single process
    assert res["max_concurrent_processes"] == 3
    assert res["total_processes"] == 3
    if walk == "proc-scan":
        assert res["method"]["tree"] == "proc-scan"


def test_memory_limit_kills_the_tree_and_reports_it(tmp_path: Path) -> None:
    code = "import time\nchunks = []\nwhile True:\n    chunks.append(b'x' * (20 * 1024 * 1024))\n    time.sleep(0.01)"
    rc, rep = run_monitored(tmp_path, code, "--memory", "300M")
    assert rc == 82
    assert rep["status"] == "limit" and rep["ended_by"] == "monitor"
    lim = rep["limits_exceeded"]["memory"]
    assert lim["limit"] == 300 * MiB and lim["observed"] > 300 * MiB
    assert rep["resources"]["memory_peak_bytes"] < 600 * MiB


def test_wall_time_limit(tmp_path: Path) -> None:
    t = time.monotonic()
    rc, rep = run_monitored(tmp_path, "import time; time.sleep(30)", "--wall-time", "0.5")
    assert time.monotonic() - t < 10
    assert rc == 82 and rep["status"] == "limit"
    assert rep["limits_exceeded"]["wall_time"]["limit"] == 0.5
    assert 0.5 <= rep["resources"]["wall_time_s"] < 3


FORK_LOOP = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # make the monitor escalate to SIGKILL
depth = 0
while True:
    pid = os.fork()
    if pid == 0:
        depth += 1
        time.sleep(0.005)
        continue          # the child keeps forking
    if depth % 2:
        os._exit(0)       # odd generations orphan their child (re-parented to the monitor)
    while True:
        time.sleep(1)
"""


def test_tree_that_keeps_forking_is_killed_entirely(tmp_path: Path) -> None:
    token = f"lfm-forkloop-{os.getpid()}-{time.time_ns()}"
    code = FORK_LOOP + f"\n# {token}\n"
    rc, rep = run_monitored(tmp_path, code, "--wall-time", "1", "--kill-grace", "0.5", timeout=60)
    assert rc == 82 and rep["status"] == "limit"
    assert rep["resources"]["total_processes"] > 10
    time.sleep(0.2)
    assert procs_with_token(token) == []


def _has_grandchild(pid: int) -> bool:
    """True once the monitored task (child of `pid`) has forked its own child."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return any(Path(f"/proc/{k}/task/{k}/children").read_text().split() for k in kids)
    except OSError:
        return False


def test_sigterm_mid_run_still_writes_a_complete_report(tmp_path: Path) -> None:
    rep_path = tmp_path / "r.json"
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\nelse:\n    time.sleep(60)"
    proc = subprocess.Popen([*monitor_cmd(rep_path), PY, "-c", code])
    deadline = time.monotonic() + 30  # under load, interpreter start-up alone can take 0.5 s
    while time.monotonic() < deadline and not _has_grandchild(proc.pid):
        time.sleep(0.02)
    time.sleep(0.7)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    rep = json.loads(rep_path.read_text())
    assert rep["status"] == "signal" and rep["ended_by"] == "external-signal"
    assert rep["exit_code"] == 143
    assert rep["resources"]["max_concurrent_processes"] == 2
    assert rep["resources"]["wall_time_s"] >= 0.6


def test_exit_code_passes_through_and_exec_failure_is_127(tmp_path: Path) -> None:
    rc, rep = run_monitored(tmp_path, "import sys; sys.exit(7)")
    assert rc == 7 and rep["status"] == "error" and rep["exit_code"] == 7
    rep_path = tmp_path / "x.json"
    proc = subprocess.run(
        [*monitor_cmd(rep_path), "/nonexistent/cmd"], capture_output=True, text=True
    )
    assert proc.returncode == 127 and "cannot run" in proc.stderr


def test_cpu_of_a_busy_tree_matches_what_the_processes_measured(tmp_path: Path) -> None:
    # Each process reports its own CPU; an orphaned child's CPU must be counted too.
    code = (
        "import os, time\nos.fork()\nt = time.time()\nwhile time.time() - t < 1.0:\n    pass\n"
        "print(time.process_time(), flush=True)"
    )
    rep_path = tmp_path / "r.json"
    proc = subprocess.run(
        [*monitor_cmd(rep_path), PY, "-c", code], capture_output=True, text=True, timeout=60
    )
    own = sum(float(x) for x in proc.stdout.split())
    res = json.loads(rep_path.read_text())["resources"]
    assert own * 0.95 <= res["cpu_time_s"] <= own + 0.5, (own, res)
    assert res["cores_peak"] >= 0.9 * res["cores_avg"]
    assert res["total_processes"] == 2
    assert res["method"]["sampling_cpu_s"] < 0.1 * res["wall_time_s"]


def test_rmonitor_export_has_value_unit_pairs(tmp_path: Path) -> None:
    rm = tmp_path / "rm.json"
    _, rep = run_monitored(tmp_path, "b = b'x' * (50 * 1024 * 1024)", "--rmonitor", str(rm))
    data = json.loads(rm.read_text())
    assert data == to_rmonitor(rep)
    assert data["memory"][1] == "MB" and data["memory"][0] >= 50
    assert data["wall_time"][1] == "s" and data["exit_type"] == "normal"
    assert data["limits_exceeded"] is None


def test_lfm_pack_monitor_json_puts_only_the_report_on_stdout(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(Path(PY).parent / "lfm-pack"), "monitor", "--json", "--", PY, "-c", "print('hello')"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["schema"] == "lfm-pack.report/1" and "hello" in proc.stderr


def test_disk_limit_on_the_working_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import time\nwith open('big.bin', 'wb') as fh:\n    for _ in range(200):\n"
        "        fh.write(b'x' * (1024 * 1024)); fh.flush(); time.sleep(0.02)\ntime.sleep(5)"
    )
    rep = tmp_path / "r.json"
    proc = subprocess.run(
        [*monitor_cmd(rep, "--disk", "50M"), PY, "-c", code], cwd=work, timeout=60
    )
    assert proc.returncode == 82
    r = json.loads(rep.read_text())
    assert r["limits_exceeded"]["disk"]["observed"] > 50 * MiB
    assert r["resources"]["disk_added_peak_bytes"] > 50 * MiB


def test_cores_limit_pins_the_task(tmp_path: Path) -> None:
    rep = tmp_path / "r.json"
    proc = subprocess.run(
        [
            *monitor_cmd(rep, "--cores", "1"),
            PY,
            "-c",
            "import os; print(len(os.sched_getaffinity(0)))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "1"
    assert json.loads(rep.read_text())["limits"]["cores"] == 1


def test_leftover_background_processes_are_ended_with_the_task(tmp_path: Path) -> None:
    token = f"lfm-leftover-{time.time_ns()}"
    code = f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {token}'])"
    rc, rep = run_monitored(tmp_path, code)
    assert rc == 0 and rep["exit"]["leftover_processes"] == 1
    assert procs_with_token(token) == []


def test_task_killed_from_outside_is_reported_as_external_signal(tmp_path: Path) -> None:
    rep_path = tmp_path / "r.json"
    pid_file = tmp_path / "pid"
    code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)"
    proc = subprocess.Popen([*monitor_cmd(rep_path), PY, "-c", code])
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert proc.wait(timeout=20) == 128 + signal.SIGKILL
    rep = json.loads(rep_path.read_text())
    # no OOM kill happened on the node, so this is "someone else", not the kernel OOM killer
    assert rep["status"] == "signal" and rep["ended_by"] == "external-signal"
    assert rep["exit"]["signal"] == "SIGKILL"
