"""Cache safety in a shared /tmp: ownership, modes, planted dirs and symlinks, dead lock holders.

Everything runs the real launcher under dash against real directories; "another user" is
`nobody` (the tests run as root and chown to 65534). A planted env always carries a fake
`bin/python` that would create a marker file if it were ever executed, so "not trusted" is
proven by the marker's absence plus a correct result from a fresh extraction.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pythons import base_python

from lfm_pack.launch.devpack import DevPack, build_dev_pack

PYTHON = base_python()  # the interpreter running the tests, resolved to its base
SH = shutil.which("dash") or "/bin/sh"
INFRA = 83
NOBODY = 65534

#: Only tests that plant files owned by another user need root (chown); the rest run as anyone.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to chown files to another user"
)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    return build_dev_pack(
        tmp_path_factory.mktemp("cachepack"),
        name="cx",
        python=PYTHON,
        app_files={"job.py": "def f(x):\n    return [x, 'fresh']\n"},
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


def run(
    pack: DevPack, cache: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(p: subprocess.CompletedProcess[str], x: int = 1) -> None:
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == [x, "fresh"]


def chown_r(path: Path, uid: int) -> None:
    for root, dirs, files in os.walk(path):
        for n in [*dirs, *files]:
            os.lchown(os.path.join(root, n), uid, uid)
    os.lchown(path, uid, uid)


def fake_env(root: Path, pwned: Path) -> None:
    """A complete-looking env whose interpreter would betray being run."""
    (root / ".lfm").mkdir(parents=True)
    (root / ".lfm" / "complete").write_text("size_bytes=1\n")
    (root / "bin").mkdir()
    py = root / "bin" / "python"
    py.write_text(f"#!/bin/sh\ntouch {pwned}\necho '[1, \"fake\"]'\n")
    py.chmod(0o755)


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    path.chmod(0o700)
    return path


@needs_root
def test_cache_dir_of_another_user_refused(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    os.chown(cache, NOBODY, NOBODY)
    p = run(pack, cache, "--", "1")
    assert p.returncode == INFRA and "owned by another user" in p.stderr, p.stderr
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o777, 0o1777, 0o711, 0o750])
def test_cache_dir_open_to_others_refused(pack: DevPack, tmp_path: Path, mode: int) -> None:
    cache = tmp_path / "c"
    cache.mkdir()
    cache.chmod(mode)
    p = run(pack, cache, "--", "1")
    assert p.returncode == INFRA and "accessible to other users" in p.stderr, p.stderr
    assert list(cache.iterdir()) == []
    cache.chmod(0o700)
    ok(run(pack, cache, "--", "1"))


def test_default_cache_dir_is_created_0700(pack: DevPack, tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path), USER="tester")
    env.pop("LFM_CACHE_DIR", None)
    p = subprocess.run(
        [SH, str(pack.launcher), "--", "1"], capture_output=True, text=True, env=env, timeout=120
    )
    ok(p)
    st = (tmp_path / "lfm-cache-tester").stat()
    assert st.st_mode & 0o777 == 0o700 and st.st_uid == os.getuid()


def test_symlinked_cache_dir_refused(pack: DevPack, tmp_path: Path) -> None:
    real = private(tmp_path / "real")
    (tmp_path / "c").symlink_to(real)
    p = run(pack, tmp_path / "c", "--", "1")
    assert p.returncode == INFRA and "symlink" in p.stderr
    assert list(real.iterdir()) == []


@needs_root
def test_precreated_key_dir_of_another_user_is_not_trusted(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    pwned = tmp_path / "pwned"
    fake_env(cache / pack.env_key, pwned)
    chown_r(cache / pack.env_key, NOBODY)
    ok(run(pack, cache, "--", "1"))
    assert not pwned.exists()
    assert (cache / pack.env_key).stat().st_uid == os.getuid()
    ok(run(pack, cache, "--", "1"))  # and the fresh env is a hit now
    assert not pwned.exists()


@needs_root
def test_foreign_marker_inside_our_dir_is_not_trusted(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    pwned = tmp_path / "pwned"
    fake_env(cache / pack.env_key, pwned)
    os.chown(cache / pack.env_key / ".lfm" / "complete", NOBODY, NOBODY)
    ok(run(pack, cache, "--", "1"))
    assert not pwned.exists()


def test_symlinked_key_dir_is_not_followed(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    pwned = tmp_path / "pwned"
    elsewhere = tmp_path / "elsewhere"
    fake_env(elsewhere, pwned)
    (cache / pack.env_key).symlink_to(elsewhere)
    before = sorted(str(p) for p in elsewhere.rglob("*"))
    ok(run(pack, cache, "--", "1"))
    assert not pwned.exists()
    assert not (cache / pack.env_key).is_symlink() and (cache / pack.env_key).is_dir()
    assert sorted(str(p) for p in elsewhere.rglob("*")) == before  # untouched, not deleted


def test_dangling_symlink_as_key_dir(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    target = tmp_path / "not-yet"
    (cache / pack.env_key).symlink_to(target)
    ok(run(pack, cache, "--", "1"))
    assert not target.exists()  # the extraction did not go through the link


def test_planted_temp_dir_symlinks_are_removed_not_followed(pack: DevPack, tmp_path: Path) -> None:
    cache = private(tmp_path / "c")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data").write_text("keep")
    for suffix in ("1", "2", "99999", "status"):
        (cache / f".tmp.{pack.env_key}.{suffix}").symlink_to(victim)
    ok(run(pack, cache, "--", "1"))
    assert (victim / "data").read_text() == "keep"
    assert not list(cache.glob(".tmp.*"))


@pytest.mark.parametrize("lock", ["lock", "use"])
def test_symlinked_lock_file_refused_target_untouched(
    pack: DevPack, tmp_path: Path, lock: str
) -> None:
    cache = private(tmp_path / "c")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (cache / f".{pack.env_key}.{lock}").symlink_to(victim)
    p = run(pack, cache, "--", "1")
    assert p.returncode == INFRA and "symlink" in p.stderr, p.stderr
    assert victim.read_text() == "precious"


def test_lock_released_when_its_holder_is_killed(pack: DevPack, tmp_path: Path) -> None:
    """A holder of the extraction lock dies by SIGKILL: the waiting launcher proceeds."""
    cache = private(tmp_path / "c")
    lock = cache / f".{pack.env_key}.lock"
    holder = subprocess.Popen(
        [
            PYTHON,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(300)\n",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    waiter = subprocess.Popen(
        [SH, str(pack.launcher), "--cache-dir", str(cache), "--", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)
    assert waiter.poll() is None, "the launcher must wait for the lock holder"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == [1, "fresh"]


def test_killed_extraction_leaves_stale_temp_dir_that_the_next_run_removes(
    pack: DevPack, tmp_path: Path
) -> None:
    cache = private(tmp_path / "c")
    for _attempt in range(20):
        proc = subprocess.Popen(
            [SH, str(pack.launcher), "--cache-dir", str(cache), "--", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not list(cache.glob(f".tmp.{pack.env_key}.*")):
            if proc.poll() is not None:
                break
            time.sleep(0.001)
        with_tmp = bool(list(cache.glob(f".tmp.{pack.env_key}.*")))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if with_tmp and not (cache / pack.env_key).exists():
            break
        shutil.rmtree(cache)
        private(cache)
    else:
        pytest.fail("never caught an extraction in progress in 20 attempts")
    assert list(cache.glob(f".tmp.{pack.env_key}.*"))
    assert not (cache / pack.env_key).exists()
    ok(run(pack, cache, "--", "1"))
    assert not list(cache.glob(".tmp.*")) and not list(cache.glob(".trash.*"))
