"""`<name>-run` end to end: real tarballs, a real cache, real sh (dash), real processes."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pythons import base_python, find_python, other_pythons

from lfm_pack.launch.devpack import DevPack, build_dev_pack
from lfm_pack.launch.launcher import render_launcher
from lfm_pack.launch.runtime.lfm_runtime.placeholder import missing

PYTHON = base_python()  # the interpreter running the tests, resolved to its base
SH = shutil.which("dash") or "/bin/sh"

JOB = """
import os, sys, time
import multiprocessing as mp

def simulate(n, opts=None, **kw):
    return {"n": n, "opts": opts, "kw": kw}

def env_facts():
    return {"exe": sys.executable, "pythonpath": os.environ.get("PYTHONPATH"),
            "path0": os.environ["PATH"].split(":")[0], "flags_isolated": sys.flags.isolated,
            "home": os.environ.get("PYTHONHOME"), "sys_path_has_evil": any("evil" in p for p in sys.path)}

def square(x):
    return x * x

def spawn_pool():
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        return pool.map(square, [1, 2, 3])

def boom(x):
    raise ValueError("bad input %r" % (x,))

def hog():
    chunks = []
    while True:
        chunks.append(b"x" * (20 * 1024 * 1024))
        time.sleep(0.01)

def nap(s):
    time.sleep(s)
    return s

def unjsonable():
    return {1, 2}
"""

SCRIPT = """
import sys
print("script args", sys.argv[1:])
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


def _t(qualname: str | None, path: str = "job.py") -> dict[str, Any]:
    return {
        "raw": f"{path}:{qualname}" if qualname else path,
        "kind": "file",
        "module": path[:-3],
        "app_path": f".lfm/app/0/{path}",
        "qualname": qualname,
    }


TARGETS = [
    _t(q) for q in ("simulate", "env_facts", "spawn_pool", "boom", "hog", "nap", "unjsonable")
] + [_t(None, "script.py")]


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    out = tmp_path_factory.mktemp("pack")
    return build_dev_pack(
        out,
        name="job",
        python=PYTHON,
        app_files={"job.py": JOB, "script.py": SCRIPT},
        targets=TARGETS,
    )


@pytest.fixture(scope="module")
def warm_cache(pack: DevPack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache") / "c"
    proc = run(pack, cache, "--target", "simulate", "--", "1")
    assert proc.returncode == 0, proc.stderr
    return cache


def run(
    pack: DevPack, cache: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ) if env is None else env
    return subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
    )


def test_launcher_is_posix_sh() -> None:
    text = render_launcher(
        name="x",
        archive_name="x.tar.gz",
        archive_sha256="0" * 64,
        env_key="k",
        compression="gzip",
        manifest={"python": {"executable": "bin/python"}},
    )
    assert subprocess.run([SH, "-n"], input=text, text=True).returncode == 0
    if shutil.which("shellcheck"):
        sc = subprocess.run(
            ["shellcheck", "-s", "sh", "-"], input=text, text=True, capture_output=True
        )
        assert sc.returncode == 0, sc.stdout


def test_render_rejects_unsafe_values() -> None:
    with pytest.raises(ValueError):
        render_launcher(
            name="a b",
            archive_name="x",
            archive_sha256="0" * 64,
            env_key="k",
            compression="gzip",
            manifest={},
        )
    with pytest.raises(ValueError):
        render_launcher(
            name="a",
            archive_name="x",
            archive_sha256="0" * 64,
            env_key="k",
            compression="gzip",
            manifest={"python": {"executable": "/abs/python"}},
        )


def test_args_kwargs_and_results_round_trip(
    pack: DevPack, warm_cache: Path, tmp_path: Path
) -> None:
    p = run(pack, warm_cache, "--target", "simulate", "--", "42", '{"steps": 10}')
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == {
        "n": 42,
        "opts": {"steps": 10},
        "kw": {},
    }
    p = run(pack, warm_cache, "--target", "simulate", "--", "hello", "[1, 2]")
    assert json.loads(p.stdout) == {"n": "hello", "opts": [1, 2], "kw": {}}
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps({"args": [3], "kwargs": {"opts": None, "extra": "yes"}}))
    out = tmp_path / "out.pkl"
    p = run(
        pack,
        warm_cache,
        "--target",
        "simulate",
        "--input",
        str(inp),
        "--output",
        str(out),
        "--output-format",
        "pickle",
    )
    assert p.returncode == 0, p.stderr
    assert pickle.loads(out.read_bytes()) == {"n": 3, "opts": None, "kw": {"extra": "yes"}}
    inp_pkl = tmp_path / "in.pkl"
    inp_pkl.write_bytes(pickle.dumps({"args": [(1, 2)], "kwargs": {}}))
    p = run(
        pack,
        warm_cache,
        "--target",
        "simulate",
        "--input",
        str(inp_pkl),
        "--input-format",
        "pickle",
    )
    assert json.loads(p.stdout)["n"] == [1, 2]


def test_exception_goes_to_stderr_and_report(
    pack: DevPack, warm_cache: Path, tmp_path: Path
) -> None:
    rep = tmp_path / "r.json"
    p = run(pack, warm_cache, "--target", "boom", "--report", str(rep), "--", "7")
    assert p.returncode == 81
    assert "ValueError: bad input 7" in p.stderr and "lfm_runtime" not in p.stderr
    r = json.loads(rep.read_text())
    assert r["status"] == "error" and r["exit_code"] == 81
    assert r["error"]["type"] == "ValueError" and "job.py" in r["error"]["traceback"]
    assert r["cache"]["hit"] is True and r["env_key"] == pack.env_key
    for key in ("cache_wait_s", "interpreter_start_s", "target_import_s", "call_s", "total_s"):
        assert key in r["timings"], key
    p = run(pack, warm_cache, "--target", "unjsonable")  # a set: a sorted list, exit 0
    assert p.returncode == 0 and json.loads(p.stdout) == [1, 2]


def test_runs_as_if_activated(pack: DevPack, warm_cache: Path) -> None:
    env = dict(os.environ, PYTHONPATH="/evil", PYTHONHOME="/evil", PYTHONSTARTUP="/evil/x.py")
    p = run(pack, warm_cache, "--target", "env_facts", env=env)
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    root = str(warm_cache / pack.env_key)
    assert facts["exe"] == f"{root}/bin/python"
    assert facts["path0"] == f"{root}/bin"
    assert facts["pythonpath"] == f"{root}/.lfm/app/0:{root}/.lfm/runtime"
    assert facts["home"] is None and not facts["sys_path_has_evil"]


def test_multiprocessing_spawn_finds_user_code(pack: DevPack, warm_cache: Path) -> None:
    p = run(pack, warm_cache, "--target", "spawn_pool")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [1, 4, 9]


def test_script_and_exec_pass_exit_codes_through(pack: DevPack, warm_cache: Path) -> None:
    p = run(pack, warm_cache, "--target", "script.py", "--", "3", "x")
    assert p.returncode == 3 and "script args ['3', 'x']" in p.stdout
    p = run(
        pack,
        warm_cache,
        "--exec",
        "--",
        "python",
        "-c",
        "import sys; print(sys.prefix); sys.exit(5)",
    )
    assert p.returncode == 5


def test_memory_limit_on_a_function(pack: DevPack, warm_cache: Path, tmp_path: Path) -> None:
    rep = tmp_path / "r.json"
    p = run(pack, warm_cache, "--target", "hog", "--memory", "200M", "--report", str(rep))
    assert p.returncode == 82, p.stderr
    r = json.loads(rep.read_text())
    assert r["status"] == "limit" and r["limits_exceeded"]["memory"]["limit"] == 200 * 1024 * 1024


def test_sigterm_to_the_launcher_reaches_the_tree(
    pack: DevPack, warm_cache: Path, tmp_path: Path
) -> None:
    rep = tmp_path / "r.json"
    proc = subprocess.Popen(
        [
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(warm_cache),
            "--target",
            "nap",
            "--report",
            str(rep),
            "--",
            "60",
        ]
    )
    # Wait until sh has exec'd the monitor (under load the sh phase alone can take > 1 s).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        if b"lfm_runtime" in cmdline:
            break
        time.sleep(0.02)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    r = json.loads(rep.read_text())
    assert r["status"] == "signal" and r["resources"]["wall_time_s"] > 0.3


def _launch_together(
    pack: DevPack,
    cache: Path,
    tmp_path: Path,
    n: int,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> list[str]:
    """Start `n` launchers at once on `cache`; all must succeed and exactly one extracts."""
    procs = [
        subprocess.Popen(
            [
                SH,
                str(pack.launcher),
                "--cache-dir",
                str(cache),
                "--target",
                "simulate",
                "--report",
                str(tmp_path / f"r{i}.json"),
                "--",
                str(i),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(n)
    ]
    outs = []
    for pr in procs:
        out, err = pr.communicate(timeout=timeout)
        assert pr.returncode == 0, err
        outs.append(out)
    hits = [json.loads((tmp_path / f"r{i}.json").read_text())["cache"]["hit"] for i in range(n)]
    assert hits.count(False) == 1
    return outs


def test_sixteen_launchers_on_a_cold_cache_extract_once(pack: DevPack, tmp_path: Path) -> None:
    cache = tmp_path / "cold"
    outs = _launch_together(pack, cache, tmp_path, 16)
    assert [json.loads(out)["n"] for out in outs] == list(range(16))
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == [pack.env_key]
    assert not list(cache.glob(".tmp.*"))


def test_kill_9_during_extraction_then_next_run_recovers(tmp_path: Path) -> None:
    big = {".lfm/data/blob.bin": os.urandom(40 * 1024 * 1024)}
    pk = build_dev_pack(
        tmp_path / "p",
        name="big",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[_t("simulate")],
        extra_files=big,
    )
    cache = tmp_path / "c"
    proc = subprocess.Popen(
        [SH, str(pk.launcher), "--cache-dir", str(cache), "--", "1"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(cache.glob(f".tmp.{pk.env_key}.*")):
        time.sleep(0.005)
    assert list(cache.glob(f".tmp.{pk.env_key}.*")), "extraction never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cache / pk.env_key / ".lfm" / "complete").exists()
    p = subprocess.run(
        [SH, str(pk.launcher), "--cache-dir", str(cache), "--", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["n"] == 2
    assert not list(cache.glob(".tmp.*"))


def test_corrupt_archive_is_an_infrastructure_error_and_cache_untouched(
    pack: DevPack, tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(pack.launcher.parent, bad)
    with open(bad / pack.archive.name, "r+b") as fh:
        fh.seek(100)
        fh.write(b"garbage")
    cache = tmp_path / "c"
    rep = tmp_path / "r.json"
    p = subprocess.run(
        [SH, str(bad / pack.launcher.name), "--cache-dir", str(cache), "--report", str(rep)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 83 and "checksum mismatch" in p.stderr
    assert not (cache / pack.env_key).exists()
    r = json.loads(rep.read_text())
    assert r["status"] == "infrastructure" and r["error"]["type"] == "ArchiveError"
    missing_archive = subprocess.run(
        [
            SH,
            str(bad / pack.launcher.name),
            "--cache-dir",
            str(cache),
            "--archive",
            str(tmp_path / "nope.tar.gz"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing_archive.returncode == 83 and "archive not found" in missing_archive.stderr


@pytest.mark.parametrize(("field", "value"), [("machine", "sparc64"), ("glibc_required", "9.99")])
def test_preflight_refuses_a_foreign_node(tmp_path: Path, field: str, value: str) -> None:
    kw: dict[str, Any] = {field: value}
    pk = build_dev_pack(
        tmp_path / "p",
        name="pf",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[_t("simulate")],
        **kw,
    )
    p = subprocess.run(
        [SH, str(pk.launcher), "--cache-dir", str(tmp_path / "c"), "--", "1"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 84 and "lfm: error:" in p.stderr
    assert not (tmp_path / "c" / pk.env_key).exists()


def test_cache_dir_symlink_is_refused(pack: DevPack, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    p = run(pack, tmp_path / "link", "--", "1")
    assert p.returncode == 83 and "symlink" in p.stderr


def test_default_cache_is_private(pack: DevPack, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LFM_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path)
    p = subprocess.run(
        [SH, str(pack.launcher), "--target", "simulate", "--", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    (cache,) = tmp_path.glob("lfm-cache-*")
    assert cache.stat().st_mode & 0o777 == 0o700


def test_lru_eviction_never_removes_an_env_in_use(tmp_path: Path) -> None:
    cache = tmp_path / "c"
    packs = [
        build_dev_pack(
            tmp_path / f"p{i}",
            name=f"e{i}",
            python=PYTHON,
            app_files={"job.py": JOB + f"\n# {i}\n"},
            targets=[_t("nap")],
        )
        for i in range(3)
    ]
    busy = subprocess.Popen(
        [SH, str(packs[0].launcher), "--cache-dir", str(cache), "--", "30"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while (
            not (cache / packs[0].env_key / ".lfm" / "complete").exists()
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        time.sleep(0.3)
        assert (
            subprocess.run(
                [SH, str(packs[1].launcher), "--cache-dir", str(cache), "--", "0"]
            ).returncode
            == 0
        )
        os.utime(cache / f".{packs[1].env_key}.use", (1, 1))  # make e1 the least recently used
        p = subprocess.run(
            [
                SH,
                str(packs[2].launcher),
                "--cache-dir",
                str(cache),
                "--cache-max-size",
                "1K",
                "--",
                "0",
            ],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0, p.stderr
        present = {q.name for q in cache.iterdir() if not q.name.startswith(".")}
        assert packs[0].env_key in present  # in use: kept although over the limit
        assert packs[1].env_key not in present  # idle and least recently used: evicted
        assert packs[2].env_key in present  # the one just extracted
    finally:
        busy.kill()
        busy.wait()


def test_placeholder_raises_only_when_used() -> None:
    req = missing("requests", "requests")
    for use in (lambda: req.get, lambda: req(), lambda: list(req), lambda: bool(req)):
        with pytest.raises(ModuleNotFoundError, match="requests was left out of this pack"):
            use()
    assert "requests" in repr(req)


PLACEHOLDER_JOB = """
requests = __import__("lfm_runtime.placeholder", fromlist=["missing"]).missing("requests", "requests")

def fine(x):
    return x + 1

def uses_requests():
    return requests.get("http://example.org")
"""


def test_placeholders_inside_a_pack(tmp_path: Path) -> None:
    pk = build_dev_pack(
        tmp_path / "p",
        name="ph",
        python=PYTHON,
        app_files={"job.py": PLACEHOLDER_JOB},
        targets=[_t("fine"), _t("uses_requests")],
    )
    cache = tmp_path / "c"
    p = run(pk, cache, "--target", "fine", "--", "1")
    assert p.returncode == 0 and json.loads(p.stdout) == 2
    rep = tmp_path / "r.json"
    p = run(pk, cache, "--target", "uses_requests", "--report", str(rep))
    assert p.returncode == 81
    r = json.loads(rep.read_text())
    assert r["error"]["type"] == "ModuleNotFoundError"
    assert "requests was left out of this pack" in r["error"]["message"]


INTERPRETERS = other_pythons()  # every other CPython minor version found here


@pytest.mark.parametrize("version", INTERPRETERS)
def test_runtime_works_under_every_supported_python(tmp_path: Path, version: str) -> None:
    py = find_python(version)
    assert py is not None
    pk = build_dev_pack(
        tmp_path / "p",
        name="v",
        python=py,
        app_files={"job.py": JOB},
        targets=[_t("simulate"), _t("boom")],
        compression="zstd",
    )
    rep = tmp_path / "r.json"
    p = run(pk, tmp_path / "c", "--target", "simulate", "--report", str(rep), "--", "5", "x")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"n": 5, "opts": "x", "kw": {}}
    r = json.loads(rep.read_text())
    assert r["monitor"]["python"].startswith(version.rsplit(".", 1)[0]) and r["status"] == "ok"
    assert r["resources"]["method"]["subreaper"] is True
    p = run(pk, tmp_path / "c", "--target", "boom", "--", "1")
    assert p.returncode == 81 and "ValueError" in p.stderr


def test_without_flock_the_mkdir_lock_still_extracts_once(pack: DevPack, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in (
        "date",
        "uname",
        "getconf",
        "mkdir",
        "rm",
        "mv",
        "cat",
        "sleep",
        "sha256sum",
        "cut",
        "gzip",
        "tar",
        "du",
        "sed",
        "tr",
        "id",
        "ls",
        "awk",
    ):
        real = shutil.which(tool)
        assert real, tool
        (bindir / tool).symlink_to(real)
    env = dict(os.environ, PATH=str(bindir))
    cache = tmp_path / "c"
    _launch_together(pack, cache, tmp_path, 4, env=env, timeout=120)
    assert not list(cache.glob(".*.lockdir"))
