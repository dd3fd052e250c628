"""Warm mode (`<name>-run --serve`) end to end: real launcher, real forks, real limit kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pythons import base_python, find_python, other_pythons

from lfm_pack.launch.devpack import DevPack, build_dev_pack
from lfm_pack.launch.warm import WarmCallError, WarmServer

PYTHON = base_python()  # the interpreter running the tests, resolved to its base
SH = shutil.which("dash") or "/bin/sh"

JOB = """
import os, signal, sys, time

COUNT = 0

def add(a, b=0, **kw):
    return {"sum": a + b, "kw": kw}

def boom(x):
    raise ValueError("bad input %r" % (x,))

def hog():
    chunks = []
    while True:
        chunks.append(b"x" * (20 * 1024 * 1024))
        time.sleep(0.01)

def nap(s):
    time.sleep(s)
    return os.getpid()

def bump():
    global COUNT
    COUNT += 1
    return [COUNT, os.getpid()]

def crash():
    os.kill(os.getpid(), signal.SIGSEGV)

def chatty():
    print("this goes to stderr, never into the protocol")
    return "quiet"

def unjsonable():
    return {1, 2}

def cpus_after(s):
    time.sleep(s)
    return sorted(os.sched_getaffinity(0))

def pidfile(path, s):
    with open(path + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(s)

def quit(code):
    sys.exit(code)

def do(op, *args, **kwargs):
    return globals()[op](*args, **kwargs)
"""

SCRIPT = "print('hi')\n"
BROKEN = "import os\nraise RuntimeError('broken at import')\ndef f():\n    return 1\n"


def _t(qualname: str | None, path: str = "job.py") -> dict[str, Any]:
    return {
        "raw": f"{path}:{qualname}" if qualname else path,
        "kind": "file",
        "module": path[:-3],
        "app_path": f".lfm/app/0/{path}",
        "qualname": qualname,
    }


REPORT_KEYS = {
    "schema",
    "status",
    "exit_code",
    "ended_by",
    "mode",
    "target",
    "env_key",
    "host",
    "cache",
    "timings",
    "resources",
    "limits",
    "limits_exceeded",
    "error",
    "exit",
    "series",
    "call",
}


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    return build_dev_pack(
        tmp_path_factory.mktemp("pack"),
        name="job",
        python=PYTHON,
        app_files={"job.py": JOB, "script.py": SCRIPT, "broken.py": BROKEN},
        targets=[_t("do"), _t("add"), _t(None, "script.py"), _t("f", "broken.py")],
    )


@pytest.fixture(scope="module")
def cache(pack: DevPack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    c = tmp_path_factory.mktemp("cache") / "c"
    proc = subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(c), "--target", "add", "--", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return c


def serve(pack: DevPack, cache: Path, *opts: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SH, str(pack.launcher), "--cache-dir", str(cache), "--target", "do", *opts, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def talk(
    pack: DevPack, cache: Path, requests: list[Any], *opts: str, timeout: float = 60
) -> tuple[int, list[dict[str, Any]], str]:
    """Send all requests, then EOF; (exit code, every stdout message, stderr)."""
    proc = serve(pack, cache, *opts)
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in requests)
    out, err = proc.communicate(lines, timeout=timeout)
    return proc.returncode, [json.loads(line) for line in out.splitlines()], err


def by_id(messages: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {m["id"]: m for m in messages if m.get("event") == "result"}


def test_results_round_trip_and_every_call_has_a_complete_report(
    pack: DevPack, cache: Path, tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    reqs = [
        {"id": "a", "args": ["add", 1, 2]},
        {"id": "b", "args": ["add", 1], "kwargs": {"b": 5, "x": {"nested": [1, "é"]}}},
        {"args": ["add", 0.5, 0.25]},  # no id: the sequence number
    ]
    code, msgs, err = talk(pack, cache, reqs, "--report-dir", str(reports))
    assert code == 0, err
    assert msgs[0]["event"] == "ready" and msgs[0]["import_s"] >= 0
    assert msgs[-1] == {"event": "stopped", "reason": "eof", "calls": 3, "pid": msgs[0]["pid"]}
    res = by_id(msgs)
    assert res["a"]["value"] == {"sum": 3, "kw": {}}
    assert res["b"]["value"] == {"sum": 6, "kw": {"x": {"nested": [1, "é"]}}}
    assert res[3]["value"] == {"sum": 0.75, "kw": {}}
    files = sorted(reports.iterdir())
    assert len(files) == 3
    for r in res.values():
        assert r["status"] == "ok" and r["exit_code"] == 0
        rep = r["report"]
        assert set(rep) >= REPORT_KEYS
        assert rep["schema"] == "lfm-pack.report/1" and rep["mode"] == "warm"
        assert rep["call"]["id"] == r["id"] and rep["call"]["server_pid"] == msgs[0]["pid"]
        assert rep["resources"]["memory_peak_bytes"] > 1_000_000
        assert rep["resources"]["wall_time_s"] > 0
        assert {"queue_s", "fork_s", "call_s", "run_s", "total_s"} <= set(rep["timings"])
        on_disk = json.loads(Path(r["report_path"]).read_text())
        assert on_disk == rep


def test_exceptions_crashes_and_bad_requests_do_not_stop_the_server(
    pack: DevPack, cache: Path
) -> None:
    reqs: list[Any] = [
        {"id": "boom", "args": ["boom", 7]},
        {"id": "crash", "args": ["crash"]},
        {"id": "set", "args": ["unjsonable"]},
        {"id": "exit3", "args": ["quit", 3]},
        "this is not json",
        {"id": "typo", "argz": []},
        {"id": "chatty", "args": ["chatty"]},
        {"id": "fine", "args": ["add", 2, 2]},
    ]
    code, msgs, err = talk(pack, cache, reqs)
    assert code == 0, err
    res = by_id(msgs)
    boom = res["boom"]
    assert (boom["status"], boom["exit_code"]) == ("error", 81)
    assert boom["error"]["type"] == "ValueError" and "bad input 7" in boom["error"]["message"]
    assert "ValueError: bad input 7" in boom["report"]["error"]["traceback"]
    assert "bad input 7" in err  # the traceback on stderr, as in single-shot mode
    crash = res["crash"]
    assert (crash["status"], crash["exit_code"]) == ("crashed", 128 + signal.SIGSEGV)
    assert crash["report"]["ended_by"] == "task"
    assert crash["report"]["exit"]["signal"] == "SIGSEGV"
    assert (res["set"]["status"], res["set"]["exit_code"]) == ("ok", 0)
    assert res["set"]["value"] == [1, 2]  # plain JSON (the CLI's default format)
    assert (res["exit3"]["status"], res["exit3"]["exit_code"]) == ("error", 3)
    assert res[None]["error"]["type"] == "RequestError" and res[None]["exit_code"] == 85
    assert res["typo"]["error"]["type"] == "RequestError"
    assert res["chatty"]["value"] == "quiet"
    assert "never into the protocol" in err
    assert res["fine"]["value"] == {"sum": 4, "kw": {}}
    assert msgs[-1]["event"] == "stopped"


def test_a_call_over_the_memory_limit_is_killed_and_the_next_one_succeeds(
    pack: DevPack, cache: Path
) -> None:
    reqs = [
        {"id": "hog", "args": ["hog"]},
        {"id": "after", "args": ["add", 1, 1]},
        {"id": "slow", "args": ["nap", 30], "limits": {"wall_time": 0.5, "memory": None}},
        {"id": "last", "args": ["add", 2, 2]},
    ]
    t0 = time.monotonic()
    code, msgs, err = talk(pack, cache, reqs, "--memory", "150M")
    assert code == 0, err
    assert time.monotonic() - t0 < 20
    res = by_id(msgs)
    hog = res["hog"]
    assert (hog["status"], hog["exit_code"]) == ("limit", 82)
    rep = hog["report"]
    assert rep["ended_by"] in ("monitor", "kernel-oom-killer")
    assert "memory" in rep["limits_exceeded"]
    assert rep["limits"]["memory_bytes"] == 150 * 1024 * 1024
    assert rep["resources"]["memory_peak_bytes"] > 150 * 1024 * 1024
    assert res["after"]["value"] == {"sum": 2, "kw": {}}
    slow = res["slow"]
    assert (slow["status"], slow["exit_code"]) == ("limit", 82)
    assert "wall_time" in slow["report"]["limits_exceeded"]
    assert slow["report"]["limits"]["memory_bytes"] is None  # per-call override
    assert res["last"]["value"] == {"sum": 4, "kw": {}}


def test_each_call_runs_in_a_fresh_fork_of_the_imported_target(pack: DevPack, cache: Path) -> None:
    code, msgs, err = talk(pack, cache, [{"id": i, "args": ["bump"]} for i in range(3)])
    assert code == 0, err
    values = [m["value"] for m in msgs if m.get("event") == "result"]
    assert [v[0] for v in values] == [1, 1, 1]  # module state never leaks between calls
    pids = {v[1] for v in values}
    assert len(pids) == 3 and msgs[0]["pid"] not in pids


def test_eof_finishes_running_calls_then_exits_cleanly(pack: DevPack, cache: Path) -> None:
    code, msgs, err = talk(pack, cache, [{"id": "n", "args": ["nap", 0.5]}])
    assert code == 0, err
    res = by_id(msgs)["n"]
    assert res["status"] == "ok"
    assert not Path(f"/proc/{res['value']}").exists()  # the task process is gone
    assert msgs[-1]["reason"] == "eof"


def test_sigterm_reaches_running_calls_and_their_reports_are_written(
    pack: DevPack, cache: Path, tmp_path: Path
) -> None:
    proc = serve(pack, cache, "--report-dir", str(tmp_path), "--kill-grace", "2")
    assert proc.stdin is not None and proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["event"] == "ready"
    proc.stdin.write(json.dumps({"id": "long", "args": ["nap", 60]}) + "\n")
    proc.stdin.write(json.dumps({"id": "queued", "args": ["nap", 60]}) + "\n")
    proc.stdin.flush()
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 128 + signal.SIGTERM, err
    msgs = [json.loads(line) for line in out.splitlines()]
    res = by_id(msgs)
    long = res["long"]
    assert (long["status"], long["exit_code"]) == ("signal", 143)
    assert long["report"]["ended_by"] == "external-signal"
    assert json.loads(Path(long["report_path"]).read_text())["status"] == "signal"
    assert res["queued"]["error"]["type"] == "Cancelled"
    assert msgs[-1] == {"event": "stopped", "reason": "SIGTERM", "calls": 1, "pid": ready["pid"]}


def test_slots_run_calls_concurrently(pack: DevPack, cache: Path) -> None:
    reqs = [{"id": i, "args": ["nap", 1.5]} for i in range(2)]
    t0 = time.monotonic()
    code, msgs, err = talk(pack, cache, reqs, "--slots", "2")
    elapsed = time.monotonic() - t0
    assert code == 0, err
    res = by_id(msgs)
    assert all(r["status"] == "ok" for r in res.values())
    starts = sorted(r["report"]["started_at"] for r in res.values())
    assert starts[1] - starts[0] < 1.0  # the second did not wait for the first
    assert elapsed < 2 * 1.5 + 1.0


def test_spool_mode(pack: DevPack, cache: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "in").mkdir(parents=True)

    def put(name: str, body: str) -> None:
        tmp = spool / "in" / f".{name}.tmp"
        tmp.write_text(body)
        tmp.rename(spool / "in" / f"{name}.json")  # atomic: the server never sees half a file

    put("one", json.dumps({"args": ["add", 1, 2]}))
    put("two", json.dumps({"id": "custom", "args": ["boom", 1]}))
    put("bad", "{not json")
    spool_opts = ["--spool", str(spool), "--serve"]
    proc = subprocess.Popen(
        [SH, str(pack.launcher), "--cache-dir", str(cache), "--target", "do", *spool_opts],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(list((spool / "out").glob("*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    put("three", json.dumps({"args": ["add", 3, 3]}))  # picked up while running
    while len(list((spool / "out").glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    (spool / "stop").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    outs = {p.stem: json.loads(p.read_text()) for p in (spool / "out").glob("*.json")}
    assert set(outs) == {"one", "two", "bad", "three"}
    assert outs["one"]["id"] == "one" and outs["one"]["value"] == {"sum": 3, "kw": {}}
    assert outs["two"]["id"] == "custom" and outs["two"]["exit_code"] == 81
    assert outs["bad"]["error"]["type"] == "RequestError"
    assert outs["three"]["report"]["mode"] == "warm"
    assert not list((spool / "in").iterdir()) and not list((spool / "work").iterdir())
    events = [json.loads(line)["event"] for line in out.splitlines()]
    assert events == ["ready", "stopped"]


def test_usage_errors(pack: DevPack, cache: Path) -> None:
    base = [SH, str(pack.launcher), "--cache-dir", str(cache)]
    for extra in (
        ["--target", "do", "--serve", "--", "1"],
        ["--target", "script.py", "--serve"],
        ["--target", "do", "--serve", "--report", "x.json"],
        ["--target", "do", "--slots", "2", "--", "add", "1"],
    ):
        proc = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 85, (extra, proc.stderr)


def test_python_client(pack: DevPack, cache: Path) -> None:
    with WarmServer(pack.launcher, cache_dir=cache, target="add", sh=SH, slots=2) as srv:
        assert srv.call(1, 2) == {"sum": 3, "kw": {}}
        assert srv.call(1, b=2, z="k") == {"sum": 3, "kw": {"z": "k"}}
        with pytest.raises(WarmCallError) as exc:
            srv.call("a", 1)  # TypeError inside the function
        assert exc.value.result.exit_code == 81
        assert exc.value.result.error is not None
        assert exc.value.result.error["type"] == "TypeError"
        assert isinstance(exc.value, TypeError)  # the function's own type, also a WarmCallError
        results = srv.map([[i, i] for i in range(20)])
        assert [r.value["sum"] for r in results] == [2 * i for i in range(20)]
        assert all(r.report is not None and r.report["mode"] == "warm" for r in results)
    assert srv.proc is not None and srv.proc.returncode == 0


def test_import_failure_is_reported_once_and_the_server_exits_81(
    pack: DevPack, cache: Path
) -> None:
    proc = subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(cache), "--target", "broken.py:f", "--serve"],
        input=json.dumps({"args": []}) + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 81, proc.stderr
    (msg,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert msg["event"] == "failed" and msg["error"]["phase"] == "import"
    assert "broken at import" in msg["error"]["message"] and "broken at import" in proc.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
def test_concurrent_calls_with_cores_get_different_cpus(pack: DevPack, cache: Path) -> None:
    reqs = [{"id": i, "args": ["cpus_after", 0.5]} for i in range(2)]
    code, msgs, err = talk(pack, cache, reqs, "--slots", "2", "--cores", "1")
    assert code == 0, err
    res = by_id(msgs)
    assert all(len(r["value"]) == 1 for r in res.values())
    assert res[0]["value"] != res[1]["value"]
    assert {r["report"]["call"]["slot"] for r in res.values()} == {0, 1}


def test_server_killed_with_sigkill_still_ends_and_reports_its_calls(
    pack: DevPack, cache: Path, tmp_path: Path
) -> None:
    pid_path = tmp_path / "task.pid"
    proc = serve(pack, cache, "--report-dir", str(tmp_path / "reports"), "--kill-grace", "1")
    assert proc.stdin is not None
    proc.stdin.write(json.dumps({"id": "k", "args": ["pidfile", str(pid_path), 60]}) + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not pid_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    task = int(pid_path.read_text())
    proc.kill()
    proc.communicate(timeout=30)
    while Path(f"/proc/{task}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{task}").exists()  # no orphaned task keeps running
    while not list((tmp_path / "reports").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (rep_path,) = (tmp_path / "reports").glob("*.json")
    rep = json.loads(rep_path.read_text())
    assert rep["status"] == "signal" and rep["call"]["id"] == "k"


INTERPRETERS = other_pythons()  # every other CPython minor version found here


@pytest.mark.parametrize("version", INTERPRETERS)
def test_warm_mode_under_every_supported_python(tmp_path: Path, version: str) -> None:
    py = find_python(version)
    assert py is not None
    pk = build_dev_pack(
        tmp_path / "p", name="v", python=py, app_files={"job.py": JOB}, targets=[_t("do")]
    )
    reqs = [
        {"id": "ok", "args": ["add", 1, 2]},
        {"id": "boom", "args": ["boom", 1]},
        {"id": "hog", "args": ["hog"], "limits": {"memory": "100M"}},
        {"id": "after", "args": ["bump"]},
    ]
    code, msgs, err = talk(pk, tmp_path / "c", reqs)
    assert code == 0, err
    res = by_id(msgs)
    assert [res[k]["exit_code"] for k in ("ok", "boom", "hog", "after")] == [0, 81, 82, 0]
    assert res["ok"]["report"]["monitor"]["python"].startswith(version.rsplit(".", 1)[0])
