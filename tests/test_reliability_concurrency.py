"""32 launchers on a cold cache, some killed at random, many rounds; and untrusted arguments.

Exactly-once is counted two ways: the reports of the survivors (`cache.hit` false for at most
the one that extracted) and the completion marker's `by_pid` (the launcher whose extraction
was renamed into place). If the extractor itself was killed after its rename, no survivor may
claim a miss; if it was killed before, another launcher extracts (the first never completed),
and still exactly one extraction completes per round. Every survivor must succeed.

The second half proves the launcher never evaluates its arguments: shell metacharacters,
command substitutions and Python expressions arrive in the function as plain strings and no
file is created.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
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
SEED = int(os.environ.get("LFM_RELIABILITY_SEED", "20261126"))

LAUNCHERS = 32
KILLED_PER_ROUND = 8
ROUNDS = 10
ROUNDS_SLOW = 30

JOB = """
import sys

def f(x):
    return [x, "fresh"]

def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}

def argv():
    return sys.argv
"""


def _target(q: str | None, path: str = "job.py") -> dict[str, object]:
    return {
        "raw": f"{path}:{q}" if q else path,
        "kind": "file",
        "module": path[:-3],
        "app_path": f".lfm/app/0/{path}",
        "qualname": q,
    }


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    return build_dev_pack(
        tmp_path_factory.mktemp("concpack"),
        name="cc",
        python=PYTHON,
        app_files={
            "job.py": JOB,
            "script.py": "import sys, json\nprint(json.dumps(sys.argv[1:]))\n",
        },
        targets=[_target("f"), _target("echo"), _target(None, "script.py")],
        extra_files={"lib/blob.bin": os.urandom(2 << 20)},
    )


def _round(pack: DevPack, root: Path, rng: random.Random, rnd: int) -> dict[str, int]:
    cache = root / f"cache{rnd}"
    cache.mkdir(mode=0o700)
    cache.chmod(0o700)
    procs = []
    for i in range(LAUNCHERS):
        procs.append(
            subprocess.Popen(
                [
                    SH,
                    str(pack.launcher),
                    "--cache-dir",
                    str(cache),
                    "--report",
                    str(root / f"r{rnd}-{i}.json"),
                    "--target",
                    "job.py:f",
                    "--",
                    str(i),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    victims = set(rng.sample(range(LAUNCHERS), KILLED_PER_ROUND))
    t0 = time.monotonic()
    for i in sorted(victims, key=lambda _: rng.random()):
        time.sleep(max(0.0, rng.uniform(0.0, 1.5) - (time.monotonic() - t0)))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(procs[i].pid, signal.SIGKILL)
    misses: list[int] = []
    survivors = 0
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        if i in victims and p.returncode == -signal.SIGKILL:
            continue
        survivors += 1
        assert p.returncode == 0, f"round {rnd} launcher {i}: {err}"
        assert json.loads(out.splitlines()[-1]) == [i, "fresh"]
        rep = json.loads((root / f"r{rnd}-{i}.json").read_text())
        if not rep["cache"]["hit"]:
            misses.append(p.pid)
    marker = (cache / pack.env_key / ".lfm" / "complete").read_text()
    by_pid = int(marker.split("by_pid=")[1].split()[0])
    extractor_survived = by_pid in {p.pid for i, p in enumerate(procs) if p.returncode == 0}
    assert misses == ([by_pid] if extractor_survived else []), (rnd, misses, by_pid)
    # A killed extractor may leave its .tmp dir; the env is still the one complete one.
    stale = len(list(cache.glob(".tmp.*")))
    assert sorted(c.name for c in cache.iterdir() if not c.name.startswith(".")) == [pack.env_key]
    # A later run cleans whatever a killed extractor left and is a hit.
    p2 = subprocess.run(
        [
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(cache),
            "--report",
            str(root / "after.json"),
            "--target",
            "job.py:f",
            "--",
            "99",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p2.returncode == 0, p2.stderr
    assert json.loads((root / "after.json").read_text())["cache"]["hit"] is True
    return {
        "survivors": survivors,
        "killed": LAUNCHERS - survivors,
        "extractions": 1,
        "extractor-killed": int(not extractor_survived),
        "rounds-with-stale-tmp": int(stale > 0),
    }


def _stress(pack: DevPack, root: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    totals = {
        "survivors": 0,
        "killed": 0,
        "extractions": 0,
        "extractor-killed": 0,
        "rounds-with-stale-tmp": 0,
    }
    t0 = time.monotonic()
    for rnd in range(rounds):
        for k, v in _round(pack, root, rng, rnd).items():
            totals[k] += v
    print(
        f"concurrency: {rounds} rounds x {LAUNCHERS} launchers: {totals}, "
        f"{time.monotonic() - t0:.1f} s"
    )


def test_32_launchers_cold_cache_some_killed_extract_once(pack: DevPack, tmp_path: Path) -> None:
    _stress(pack, tmp_path, ROUNDS, SEED + 10)


@pytest.mark.slow
def test_32_launchers_cold_cache_some_killed_many_rounds(pack: DevPack, tmp_path: Path) -> None:
    _stress(pack, tmp_path, ROUNDS_SLOW, SEED + 11)


# ---------------------------------------------------------------- untrusted arguments -----

HOSTILE_ARGS = [
    "$(touch {p}/subst)",
    "`touch {p}/backtick`",
    "; touch {p}/semicolon",
    "&& touch {p}/and",
    "| touch {p}/pipe",
    "$((1+1))",
    "${{HOME}}",
    "__import__('os').system('touch {p}/pyeval')",
    "eval(\"open('{p}/pyeval2','w')\")",
    "exec('import os; os.mknod(\"{p}/pyexec\")')",
    "*",
    "{p}/*",
    "'\"",
    "line1\nline2",
    "--cache-dir={p}/evilcache",
    "--report",
    "-h",
    "--",
    "",
    " ",
    "\\",
    '{{"__class__": "os.system"}}',
]


def _args(p: Path) -> list[str]:
    return [a.format(p=p) for a in HOSTILE_ARGS]


def test_function_arguments_are_never_evaluated(pack: DevPack, tmp_path: Path) -> None:
    trap = tmp_path / "trap"
    trap.mkdir()
    cache = tmp_path / "c"
    args = _args(trap)
    p = subprocess.run(
        [SH, str(pack.launcher), "--cache-dir", str(cache), "--target", "job.py:echo", "--", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=trap,
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.splitlines()[-1])["args"]
    # Each arg is JSON-decoded when it parses (a dict for the last one), else kept verbatim.
    expected: list[object] = []
    for a in args:
        try:
            expected.append(json.loads(a))
        except ValueError:
            expected.append(a)
    assert got == expected
    assert list(trap.iterdir()) == []
    assert not (trap / "evilcache").exists()


def test_script_arguments_are_never_evaluated(pack: DevPack, tmp_path: Path) -> None:
    trap = tmp_path / "trap"
    trap.mkdir()
    args = _args(trap)
    p = subprocess.run(
        [
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(tmp_path / "c"),
            "--target",
            "script.py",
            "--",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=trap,
    )
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == args
    assert list(trap.iterdir()) == []


def test_hostile_values_of_launcher_options_are_plain_paths(pack: DevPack, tmp_path: Path) -> None:
    """Option values are paths or sizes, used quoted: a substitution is a literal file name."""
    trap = tmp_path / "trap"
    trap.mkdir()
    cache = tmp_path / "$(touch pwned)"
    rep = trap / "`touch pwned2`.json"
    p = subprocess.run(
        [
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(cache),
            "--report",
            str(rep),
            "--target",
            "job.py:f",
            "--",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=trap,
    )
    assert p.returncode == 0, p.stderr
    assert cache.is_dir() and rep.is_file()
    assert sorted(x.name for x in trap.iterdir()) == [rep.name]


def test_input_file_is_json_by_default_and_pickle_is_refused_as_json(
    pack: DevPack, tmp_path: Path
) -> None:
    """A pickle handed to --input without --input-format pickle is never unpickled."""
    import pickle

    trap = tmp_path / "trap"
    trap.mkdir()

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {trap}/unpickled",))

    inp = tmp_path / "in.pkl"
    inp.write_bytes(pickle.dumps({"args": [Boom()], "kwargs": {}}))
    p = subprocess.run(
        [
            SH,
            str(pack.launcher),
            "--cache-dir",
            str(tmp_path / "c"),
            "--target",
            "job.py:echo",
            "--input",
            str(inp),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode != 0
    assert list(trap.iterdir()) == []
