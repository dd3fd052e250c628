"""Crash consistency: kill -9 at random points of pack, extraction and the monitor; full disks.

The promises under test: `lfm-pack pack` never leaves a partial product under a final name;
an extraction killed anywhere leaves nothing a later launcher mistakes for complete, and the
later launcher recovers; a full disk (tmpfs or RLIMIT_FSIZE) is a clear infrastructure error
with nothing marked complete, and the same cache works once there is space; a report file is
complete JSON or absent whenever the run is killed. Delays are random but seeded and printed,
so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythons import base_python

from lfm_pack.launch.devpack import DevPack, build_dev_pack

PYTHON = base_python()  # the interpreter running the tests, resolved to its base
SH = shutil.which("dash") or "/bin/sh"
ROOT = Path(__file__).resolve().parent.parent
INFRA = 83
SEED = int(os.environ.get("LFM_RELIABILITY_SEED", "20261126"))

# Repetition counts (docs/reliability.md quotes them; the slow variants multiply them).
PACK_KILLS = 2
PACK_KILLS_SLOW = 12
EXTRACT_KILLS = 12
REPORT_KILLS = 24

JOB = """
import time

def f(x):
    return [x, "fresh"]

def nap(s):
    time.sleep(s)
    return s
"""


def _target(q: str) -> dict[str, object]:
    return {
        "raw": f"job.py:{q}",
        "kind": "file",
        "module": "job",
        "app_path": ".lfm/app/0/job.py",
        "qualname": q,
    }


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    # 6 MiB of incompressible payload: extraction takes long enough to be hit mid-way and
    # overflows a 4 MiB tmpfs.
    return build_dev_pack(
        tmp_path_factory.mktemp("crashpack"),
        name="kx",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[_target("f"), _target("nap")],
        extra_files={f"lib/blob{i}.bin": os.urandom(1 << 20) for i in range(6)},
    )


def launch(pack: DevPack, cache: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SH, str(pack.launcher), "--cache-dir", str(cache), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run(pack: DevPack, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(p: subprocess.CompletedProcess[str], x: int) -> None:
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == [x, "fresh"]


def kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


# ---------------------------------------------------------------- extraction killed -------


def test_extraction_killed_at_random_points_next_run_recovers(
    pack: DevPack, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    # How long a cold run takes here, to spread the kills over all of it.
    cache0 = private(tmp_path / "probe")
    t0 = time.monotonic()
    ok(run(pack, cache0, "--target", "job.py:f", "--", "0"), 0)
    cold = time.monotonic() - t0
    outcomes = {"killed-before-complete": 0, "killed-after-complete": 0}
    for i in range(EXTRACT_KILLS):
        cache = private(tmp_path / f"c{i}")
        delay = rng.uniform(0.0, cold)
        proc = launch(pack, cache, "--target", "job.py:f", "--", str(i))
        time.sleep(delay)
        kill_group(proc)
        env = cache / pack.env_key
        complete = (env / ".lfm" / "complete").is_file()
        outcomes["killed-after-complete" if complete else "killed-before-complete"] += 1
        if not complete:  # whatever is left must not look like an env
            assert not env.exists(), f"seed {SEED} round {i} delay {delay:.3f}"
        p = run(pack, cache, "--target", "job.py:f", "--", str(i))
        ok(p, i)
        assert not list(cache.glob(".tmp.*")) and not list(cache.glob(".trash.*"))
        assert (env / ".lfm" / "complete").is_file()
    print("extraction kills:", outcomes, f"(cold run {cold:.2f} s)")
    assert outcomes["killed-before-complete"] >= 1


# ---------------------------------------------------------------- disk full ---------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> object:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_tmpfs_clear_error_nothing_complete_then_recovers(
    pack: DevPack, tmp_path: Path, small_tmpfs: Path
) -> None:
    cache = small_tmpfs
    rep = tmp_path / "r.json"
    p = run(pack, cache, "--report", str(rep), "--target", "job.py:f", "--", "1")
    assert p.returncode == INFRA, p.stderr
    assert "No space left on device" in p.stderr and "nothing marked complete" in p.stderr
    r = json.loads(rep.read_text())
    assert r["status"] == "infrastructure" and r["error"]["type"] == "UnpackError"
    assert not (cache / pack.env_key).exists()
    assert not list(cache.glob(".tmp.*"))
    # Space arrives: the same cache dir now works.
    subprocess.run(["mount", "-o", "remount,size=64m", str(cache)], check=True)
    ok(run(pack, cache, "--target", "job.py:f", "--", "2"), 2)


def test_file_size_limit_during_extraction(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    p = subprocess.run(
        [
            "prlimit",
            "--fsize=500000",
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(cache),
            "--target",
            "job.py:f",
            "--",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == INFRA, p.stderr
    assert "nothing marked complete" in p.stderr
    assert not (cache / pack.env_key).exists() and not list(cache.glob(".tmp.*"))
    ok(run(pack, cache, "--target", "job.py:f", "--", "3"), 3)


# ---------------------------------------------------------------- reports -----------------


def test_report_is_complete_json_or_absent_when_killed_anywhere(
    pack: DevPack, tmp_path: Path
) -> None:
    rng = random.Random(SEED + 1)
    cache = private(tmp_path / "c")
    ok(run(pack, cache, "--target", "job.py:f", "--", "0"), 0)  # warm: kills hit the run
    seen = {"absent": 0, "complete": 0, "stray-temp": 0}
    for i in range(REPORT_KILLS):
        rep = tmp_path / f"r{i}.json"
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        proc = launch(pack, cache, "--report", str(rep), "--target", "job.py:nap", "--", "0.2")
        time.sleep(rng.uniform(0.0, 0.6))
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)  # the whole tree, monitor included
            else:
                proc.send_signal(sig)  # the launcher/monitor only: it must finish the report
        proc.communicate(timeout=60)
        if rep.exists():
            json.loads(rep.read_text())  # complete JSON, never a torn file
            seen["complete"] += 1
        else:
            seen["absent"] += 1
        # The monitor's temp name (.r<i>.json.<pid>.tmp) may survive a SIGKILL, never a SIGTERM.
        stray = [p.name for p in tmp_path.iterdir() if p.name.startswith(f".r{i}.json.")]
        seen["stray-temp"] += bool(stray)
        assert stray == [] or sig == signal.SIGKILL, stray
    print("report kills:", seen)
    assert seen["complete"] >= 1


# ---------------------------------------------------------------- pack killed -------------


def _pack_products(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


FINAL = ["simulate-run", "simulate.lock.json", "simulate.tar.gz"]


def _kill_pack_at_random(
    tmp_path: Path, rounds: int, seed: int, *, run_launcher: bool
) -> dict[str, int]:
    rng = random.Random(seed)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    ref = tmp_path / "ref"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "lfm_pack",
            "pack",
            "examples/montecarlo/job.py:simulate",
            "-o",
            str(ref),
            "--no-verify",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        env=env,
    )
    full = time.monotonic() - t0
    assert _pack_products(ref) == FINAL
    seen = {"none": 0, "all": 0, "staging-left": 0}
    for i in range(rounds):
        out = tmp_path / f"o{i}"
        delay = rng.uniform(0.2, 1.3) * full  # the tail covers the publish renames
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lfm_pack",
                "pack",
                "examples/montecarlo/job.py:simulate",
                "-o",
                str(out),
                "--no-verify",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        finals = [n for n in _pack_products(out) if n in FINAL]
        seen["staging-left"] += any(n.startswith(".lfm-pack-") for n in _pack_products(out))
        where = f"seed {seed} round {i} delay {delay:.2f}s of {full:.2f}s: {_pack_products(out)}"
        assert finals in ([], FINAL), where
        if finals:
            seen["all"] += 1
            # The launcher's recorded sha256 is the archive's, and the lock is complete JSON.
            text = (out / "simulate-run").read_text()
            recorded = text.split("LFM_ARCHIVE_SHA256='")[1].split("'")[0]
            digest = hashlib.sha256((out / "simulate.tar.gz").read_bytes()).hexdigest()
            assert recorded == digest, where
            json.loads((out / "simulate.lock.json").read_text())
            if not run_launcher:
                continue
            cache = private(tmp_path / f"cache{i}")
            p = subprocess.run(
                [SH, str(out / "simulate-run"), "--cache-dir", str(cache), "--", "1000"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert p.returncode == 0, where + p.stderr
            assert json.loads(p.stdout.splitlines()[-1])["samples"] == 1000
        else:
            seen["none"] += 1
    print("pack kills:", seen, f"(full pack {full:.1f} s)")
    return seen


def test_pack_killed_at_random_points_leaves_all_or_nothing(tmp_path: Path) -> None:
    _kill_pack_at_random(tmp_path, PACK_KILLS, SEED + 2, run_launcher=False)


@pytest.mark.slow
def test_pack_killed_at_random_points_many(tmp_path: Path) -> None:
    _kill_pack_at_random(tmp_path, PACK_KILLS_SLOW, SEED + 3, run_launcher=True)
