"""`python -m lfm_pack analyze` end to end, in real subprocesses: products and every error path.

The CLI's contract (docs/exit-codes.md): an error is ONE `error: ...` line, optionally one
`hint: ...` line, on stderr; nothing on stdout; the documented exit code; never a traceback.
A product (`--json`, `--format ...`, `--why`) is on stdout only. Each case runs the real
command against a real (hand-made metadata) venv through `--prefix`, so nothing here depends
on what happens to be installed in the test interpreter.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from envbuild import FakeDist, fake_env

from lfm_pack.errors import ExitCode

JOB = """\
import pandas


def simulate(n):
    return pandas.DataFrame(range(n))


def simulator_v2():
    import requests
    return requests
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv: pandas (requires numpy) and requests, only pandas reached by simulate()."""
    dists = [
        FakeDist("pandas", "2.2.2", {"pandas/__init__.py": ""}, requires=["numpy>=1.22"]),
        FakeDist("numpy", "1.26.4", {"numpy/__init__.py": ""}),
        FakeDist("requests", "2.32.3", {"requests/__init__.py": ""}),
    ]
    return fake_env(tmp_path_factory.mktemp("cli"), dists)


@pytest.fixture()
def proj(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "job.py").write_text(JOB)
    return root


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["COLUMNS"] = "200"  # rich must not wrap the one-line error for this check
    return subprocess.run(
        [sys.executable, "-m", "lfm_pack", "analyze", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, pattern: str) -> str:
    """The documented error shape; returns the error line for further checks."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stdout == "", proc.stdout
    lines = proc.stderr.rstrip("\n").split("\n")
    assert 1 <= len(lines) <= 2, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), proc.stderr
    assert re.search(pattern, lines[0]), (pattern, lines[0])
    return lines[0]


# ------------------------------------------------------------------ error paths


@dataclass(frozen=True)
class Case:
    """One bad input: `setup(proj, venv)` writes files and returns the CLI arguments."""

    name: str
    setup: Callable[[Path, Path], list[str]]
    code: int
    pattern: str


def _write(path: Path, data: bytes, mode: int | None = None) -> Path:
    path.write_bytes(data)
    if mode is not None:
        path.chmod(mode)
    return path


def _exe(path: Path, script: str) -> str:
    _write(path, script.encode(), 0o755)
    return str(path)


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return path.name


def _symlink(path: Path, to: str) -> str:
    path.symlink_to(to)
    return path.name


CASES = [
    # Opening a FIFO blocks forever and /dev/zero never ends: both used to hang the CLI.
    Case(
        "fifo-target",
        lambda p, v: ["--prefix", str(v), _fifo(p / "pipe.py") + ":main"],
        3,
        r"pipe\.py: not a regular file",
    ),
    Case(
        "device-target",
        lambda p, v: ["--prefix", str(v), _symlink(p / "zero.py", "/dev/zero") + ":main"],
        3,
        r"zero\.py: not a regular file",
    ),
    Case(
        "huge-target",
        lambda p, v: [
            "--prefix",
            str(v),
            _write(p / "big.py", b"def main():\n    pass\n" + b"x = 1\n" * 400_000).name,
        ],
        3,
        r"big\.py: 2\.3 MiB is over lfm-pack's 2 MiB limit",
    ),
    Case(
        "utf16-target",
        lambda p, v: ["--prefix", str(v), _write(p / "u16.py", "x = 1\n".encode("utf-16")).name],
        3,
        r"u16\.py: source is UTF-16-encoded",
    ),
    Case(
        "missing-file",
        lambda p, v: ["--prefix", str(v), "nope.py:main"],
        3,
        r"nope\.py: no such file",
    ),
    Case(
        "syntax-error",
        lambda p, v: [
            "--prefix",
            str(v),
            str(_write(p / "bad.py", b"x = 1\n\ndef main(:\n    pass\n").name) + ":main",
        ],
        3,
        r"bad\.py:3: syntax error",
    ),
    Case(
        "function-not-found",
        lambda p, v: ["--prefix", str(v), "job.py:simulat"],
        3,
        r"no function or class 'simulat'",
    ),
    Case(
        "undecodable",
        lambda p, v: ["--prefix", str(v), _write(p / "l1.py", b"s = 'caf\xe9'\n").name],
        3,
        r"l1\.py: (source is not valid utf-8|cannot decode the source)",
    ),
    Case(
        "invalid-coding-cookie",
        lambda p, v: [
            "--prefix",
            str(v),
            _write(p / "ck.py", b"# -*- coding: klingon -*-\nx = 1\n").name,
        ],
        3,
        r"ck\.py: cannot decode the source",
    ),
    Case(
        "null-bytes",
        lambda p, v: ["--prefix", str(v), _write(p / "nul.py", b"x = 1\x00\n").name],
        3,
        r"nul\.py: source contains a null byte",
    ),
    Case(
        "not-a-py-file",
        lambda p, v: ["--prefix", str(v), _write(p / "notes.txt", b"hi\n").name + ":main"],
        3,
        r"not a \.py source file",
    ),
    Case(
        "bad-qualname",
        lambda p, v: ["--prefix", str(v), "job.py:1x"],
        3,
        r"is not a function or Class\.method name",
    ),
    Case(
        "module-not-found",
        lambda p, v: ["--prefix", str(v), "no_such_pkg_xyz.mod:f"],
        3,
        r"no such module in the target environment",
    ),
    Case(
        "why-not-in-closure",
        lambda p, v: ["--prefix", str(v), "--why", "requests", "job.py:simulate"],
        3,
        r"requests is not in the closure of job\.py:simulate",
    ),
    Case(
        "prefix-not-an-env",
        lambda p, v: ["--prefix", str(p), "job.py:simulate"],
        4,
        r"is not a Python environment",
    ),
    Case(
        "prefix-missing",
        lambda p, v: ["--prefix", str(p / "gone"), "job.py:simulate"],
        4,
        r"no such directory",
    ),
    Case(
        "python-bin-true",
        lambda p, v: ["--python", "/bin/true", "job.py:simulate"],
        4,
        r"/bin/true is not a Python interpreter",
    ),
    Case(
        "python-text-file",
        lambda p, v: ["--python", str(_write(p / "py.txt", b"hello\n")), "job.py:simulate"],
        4,
        r"py\.txt is not executable",
    ),
    Case(
        "python-executable-text-file",
        lambda p, v: ["--python", str(_write(p / "pyx", b"hello\n", 0o755)), "job.py:simulate"],
        4,
        r"cannot run .*pyx: Exec format error",
    ),
    Case(
        # A bare name is a command on PATH, as in a shell; a file of that name here is ./name.
        "python-bare-name-not-on-path",
        lambda p, v: [
            "--python",
            _exe(p / "mypython", "#!/bin/sh\necho '{}'\n").rsplit("/")[-1],
            "job.py:simulate",
        ],
        4,
        r"--python mypython: not found on PATH \(a file of that name is here: pass \./mypython\)",
    ),
    Case(
        "python-dot-slash-name",
        lambda p, v: [
            "--python",
            "./" + _exe(p / "python3", "#!/bin/sh\necho '{}'\n").rsplit("/")[-1],
            "job.py:simulate",
        ],
        4,
        r"proj/python3 is not a Python interpreter lfm-pack understands",
    ),
    Case(
        # a program that echoes its arguments must not dump the probe script into the error
        "python-echoes-the-probe",
        lambda p, v: ["--python", "/bin/ls", "job.py:simulate"],
        4,
        r"/bin/ls failed the probe \(exit 2\): /bin/ls: cannot access …$",
    ),
    Case(
        "python-wrong-json",
        lambda p, v: [
            "--python",
            _exe(p / "fake", '#!/bin/sh\necho \'{"version": "x"}\'\n'),
            "job.py:simulate",
        ],
        4,
        r"is not a Python interpreter lfm-pack understands",
    ),
    Case(
        "python-fails",
        lambda p, v: [
            "--python",
            _exe(p / "boom", "#!/bin/sh\necho broken >&2\nexit 7\n"),
            "job.py:simulate",
        ],
        4,
        r"failed the probe \(exit 7\): broken",
    ),
    Case(
        # Output is capped: a program that floods stdout is refused, not buffered into OOM.
        "python-floods-output",
        lambda p, v: ["--python", _exe(p / "flood", "#!/bin/sh\nexec yes\n"), "job.py:simulate"],
        4,
        r"wrote more than 16 MiB",
    ),
    Case(
        "python-is-a-directory",
        lambda p, v: ["--python", str(p), "job.py:simulate"],
        4,
        r"is a directory, not an interpreter",
    ),
    Case(
        "python-and-prefix",
        lambda p, v: ["--python", sys.executable, "--prefix", str(v), "job.py:simulate"],
        2,
        r"mutually exclusive",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_path(case: Case, proj: Path, venv: Path) -> None:
    proc = run(case.setup(proj, venv), proj)
    assert_one_line_error(proc, case.code, case.pattern)


def test_python_by_name_is_looked_up_on_path(proj: Path, venv: Path) -> None:
    """`--python NAME` finds NAME on PATH, as a shell would (here: the venv's bin/ first)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    argv = [sys.executable, "-m", "lfm_pack", "analyze", "--python", "python", "--json"]
    proc = subprocess.run(
        [*argv, "job.py:simulate"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["environment"]["prefix"] == str(venv)


def test_function_not_found_suggests_close_names(proj: Path, venv: Path) -> None:
    proc = run(["--prefix", str(venv), "job.py:simulat"], proj)
    assert_one_line_error(proc, ExitCode.TARGET, "simulat")
    assert "hint: did you mean 'simulate', 'simulator_v2'?" in proc.stderr


def test_corrupt_metadata_in_the_target_env(tmp_path: Path, proj: Path) -> None:
    broken = fake_env(
        tmp_path, [FakeDist("pandas", "2.2.2", {"pandas/__init__.py": ""}, metadata="garbage")]
    )
    proc = run(["--prefix", str(broken), "job.py:simulate"], proj)
    assert_one_line_error(proc, ExitCode.METADATA, r"METADATA has no Name/Version")


def test_missing_target_is_a_usage_error(proj: Path) -> None:
    proc = run([], proj)
    assert proc.returncode == ExitCode.USAGE
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "Missing argument" in proc.stderr


def test_every_exit_code_is_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "exit-codes.md").read_text()
    for code in {c.code for c in CASES} | {ExitCode.METADATA, ExitCode.USAGE}:
        assert re.search(rf"^\|\s*{code}\s*\|", doc, re.M), code


# ------------------------------------------------------------------ products


def test_json_product_has_the_documented_keys(proj: Path, venv: Path) -> None:
    proc = run(["--prefix", str(venv), "--json", "job.py:simulate"], proj)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # stdout is the product and nothing else
    for key in (
        "schema", "targets", "python", "environment", "imports", "local_files",
        "unresolved", "findings", "packages",
    ):  # fmt: skip
        assert key in data, key
    assert data["schema"] == "lfm-pack.analysis/1"
    assert set(data["python"]) >= {"version", "executable"}
    assert data["environment"]["kind"] == "venv"
    assert os.path.samefile(data["environment"]["prefix"], venv)
    (imp,) = [i for i in data["imports"] if i["module"] == "pandas"]
    assert set(imp) >= {"module", "location", "via", "optional", "distribution"}
    assert imp["location"] == {"path": str(proj / "job.py"), "line": 1} or (
        imp["location"]["path"] == str(proj / "job.py") and imp["location"]["line"] == 1
    )
    assert imp["distribution"] == "pandas"
    pkgs = {p["name"]: p for p in data["packages"]}
    assert set(pkgs) == {"pandas", "numpy"}  # requests is used only by simulator_v2()
    assert pkgs["pandas"]["direct"] and pkgs["pandas"]["version"] == "2.2.2"
    assert not pkgs["numpy"]["direct"] and "pandas" in pkgs["numpy"]["required_by"]
    assert all(
        set(p) >= {"name", "version", "source", "direct", "required_by"} for p in pkgs.values()
    )
    assert data["local_files"] == [str(proj / "job.py")]


def test_format_requirements(proj: Path, venv: Path) -> None:
    proc = run(["--prefix", str(venv), "--format", "requirements", "job.py:simulate"], proj)
    assert proc.returncode == 0, proc.stderr
    reqs = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith("#")]
    assert sorted(r.split(";")[0].strip() for r in reqs) == ["numpy==1.26.4", "pandas==2.2.2"]


def test_format_conda_env(proj: Path, venv: Path) -> None:
    proc = run(["--prefix", str(venv), "--format", "conda-env", "job.py:simulate"], proj)
    assert proc.returncode == 0, proc.stderr
    assert "dependencies:" in proc.stdout
    assert "pandas==2.2.2" in proc.stdout and "numpy==1.26.4" in proc.stdout
    assert "requests" not in proc.stdout
    assert re.search(r"^\s*- python=3\.\d+", proc.stdout, re.M), proc.stdout


def test_why_prints_the_chain(proj: Path, venv: Path) -> None:
    proc = run(["--prefix", str(venv), "--why", "numpy", "job.py:simulate"], proj)
    assert proc.returncode == 0, proc.stderr
    chain = proc.stdout.strip().splitlines()[0]
    assert "pandas" in chain and chain.rstrip().endswith("numpy"), chain
    as_json = run(["--prefix", str(venv), "--why", "numpy", "--json", "job.py:simulate"], proj)
    data = json.loads(as_json.stdout)
    assert data["name"] == "numpy" and data["chains"]


def test_table_goes_to_stderr_and_output_file_is_written(proj: Path, venv: Path) -> None:
    out = proj / "lock.json"
    proc = run(["--prefix", str(venv), "job.py:simulate", "-o", str(out)], proj)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "pandas" in proc.stderr and "Pinned closure" in proc.stderr
    assert json.loads(out.read_text())["schema"] == "lfm-pack.analysis/1"
    assert not [p for p in proj.iterdir() if p.name.startswith(".lock.json")]  # no temp left
    assert stat.S_ISREG(out.stat().st_mode)
