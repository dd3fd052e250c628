"""`lfm-pack pack` end to end: pack, move, run elsewhere with the build environment hidden.

Every run of a pack happens in a private mount namespace with tmpfs over the source venv, the
project directory, the base interpreter's prefix and lfm-pack's own venv, so nothing can be
loaded from where the pack was built. These tests need root (unshare); CI runs as root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import lfm_pack_cmd
from envbuild import FakeDist, fake_env, real_venv
from hiding import host_dirs

from lfm_pack.analyze.environment import probe
from lfm_pack.pack import archive
from lfm_pack.pack.interpreter import site_dir_arc
from lfm_pack.pack.verify import namespace_available, run_hidden

pytestmark = pytest.mark.skipif(
    not namespace_available(),
    reason="needs a private mount namespace (root, or unprivileged user namespaces)",
)

#: Where the packed interpreter looks for packages: lib/python3.X/site-packages for upstream
#: CPython, lib/python3/dist-packages for Debian's (asked of the interpreter, as the pack does).
SITE = site_dir_arc(probe(python=sys.executable))

JOB = """\
import json
import requests
import greet


def main(name, times=1):
    return {"greeting": greet.hello(name), "times": times, "dumped": json.dumps([1])}


def other():
    return requests.get
"""


def _fake(tmp_path: Path, editable_src: Path | None = None) -> Path:
    dists = [
        FakeDist(
            "greet",
            "1.0",
            {
                "greet/__init__.py": "def hello(n):\n    return 'hello, ' + n\n",
                "greet/__init__.pyi": "def hello(n: str) -> str: ...\n",
                "greet/tests/test_greet.py": "def test(): pass\n",
                "greet/docs/index.txt": "docs\n",
            },
            scripts={
                "greet-cli": "#!/usr/bin/env python3\nimport greet, sys\nprint(greet.hello(sys.argv[1]))\n"
            },
        ),
        FakeDist("requests", "2.99", {"requests/__init__.py": "get = 'the real requests'\n"}),
    ]
    if editable_src is not None:
        dists.append(
            FakeDist(
                "mylib",
                "0.1",
                {"__editable__.mylib-0.1.pth": f"{editable_src}\n"},
                direct_url={"url": editable_src.as_uri(), "dir_info": {"editable": True}},
            )
        )
    return fake_env(tmp_path, dists)


def _project(tmp_path: Path, text: str = JOB, name: str = "job.py") -> Path:
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    (proj / name).write_text(text)
    return proj


def pack(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*lfm_pack_cmd(), "pack", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _hide(*extra: Path) -> list[str]:
    return host_dirs(*extra)


def _moved(out: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "moved" / "somewhere else"
    shutil.copytree(out, dest)
    shutil.rmtree(out)
    return dest


def _names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_function_runs_from_a_moved_pack_without_its_unused_imports(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    out = tmp_path / "out"
    proc = pack(proj, "--prefix", str(venv), "job.py:main", "-o", str(out), "--json")
    summary = json.loads(proc.stdout)
    assert summary["verify"]["mode"] == "hidden-prefix"
    assert summary["distributions"] == ["greet==1.0"]
    assert sorted(os.listdir(out)) == ["main-run", "main.lock.json", "main.tar.gz"]
    names = _names(out / "main.tar.gz")
    assert f"{SITE}/greet/__init__.py" in names
    assert f"{SITE}/greet-1.0.dist-info/METADATA" in names
    assert f"{SITE}/greet/tests/test_greet.py" in names  # no --strip
    assert not [n for n in names if "requests" in n]  # imported at top, never used by main
    assert not [n for n in names if n.endswith("pyvenv.cfg") or "__pycache__" in n]
    assert "lib/python3.11/tkinter/__init__.py" not in names
    assert "lib/python3.11/os.py" in names and ".lfm/manifest.json" in names

    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "main-run"), "--cache-dir", str(tmp_path / "node-cache"), "--", "ada", "3"],
        _hide(venv, proj),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"greeting": "hello, ada", "times": 3, "dumped": "[1]"}

    # the unused import is a placeholder that fails loudly only when used
    x = tmp_path / "x"
    x.mkdir()
    archive.extract(str(moved / "main.tar.gz"), str(x))
    code = (
        "import sys; sys.path[:0] = [sys.argv[1] + '/.lfm/runtime', sys.argv[1] + '/.lfm/app/0']\n"
        "import job\n"
        "try:\n    job.other().x\nexcept ModuleNotFoundError as e:\n    print('missing', e.name)\n"
    )
    res = run_hidden([str(x / "bin/python3.11"), "-I", "-c", code, str(x)], _hide(venv, proj))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "missing requests"
    # the console script of a closure distribution runs from the moved tree
    cli = run_hidden([str(x / "bin/greet-cli"), "bob"], _hide(venv, proj))
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "hello, bob"
    manifest = json.loads((x / ".lfm/manifest.json").read_text())
    assert manifest["schema"] == "lfm-pack.manifest/1"
    assert manifest["env_key"] == summary["env_key"]
    assert manifest["targets"][0]["module"] == "job"
    assert manifest["targets"][0]["app_path"] == ".lfm/app/0/job.py"
    f = manifest["files"][f"{SITE}/greet/__init__.py"]
    body = (x / f"{SITE}/greet/__init__.py").read_bytes()
    assert f == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "mode": 0o644}
    assert {"name": "requests", "reason": f"imported at {proj / 'job.py'}:2 but never reached"} in (
        manifest["excluded"]
    )
    assert manifest["glibc_required"].startswith("2.")


def test_same_env_and_closure_give_identical_bytes_and_the_cache_returns_it(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    digests = []
    for i in (1, 2):
        out = tmp_path / f"out{i}"
        pack(proj, "--prefix", str(venv), "job.py:main", "-o", str(out), "--no-verify", "--json")
        digests.append(hashlib.sha256((out / "main.tar.gz").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    cache = tmp_path / "cache"
    first = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:main",
            "-o",
            str(tmp_path / "c1"),
            "--cache-dir",
            str(cache),
            "--json",
        ).stdout
    )
    again = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:main",
            "-o",
            str(tmp_path / "c2"),
            "--cache-dir",
            str(cache),
            "--json",
        ).stdout
    )
    assert (first["cached"], again["cached"]) == (False, True)
    assert first["env_key"] == again["env_key"]
    assert again["seconds"] == 0.0
    assert hashlib.sha256((tmp_path / "c2" / "main.tar.gz").read_bytes()).hexdigest() == digests[0]
    # a change in the local code is a different key
    (proj / "job.py").write_text(JOB + "\n# changed\n")
    third = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:main",
            "-o",
            str(tmp_path / "c3"),
            "--cache-dir",
            str(cache),
            "--no-verify",
            "--json",
        ).stdout
    )
    assert not third["cached"] and third["env_key"] != first["env_key"]


def test_pack_from_a_lock_file_with_zstd(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    lock = tmp_path / "job.lock.json"
    res = subprocess.run(
        [
            *lfm_pack_cmd(),
            "analyze",
            "--prefix",
            str(venv),
            "job.py:main",
            "-o",
            str(lock),
            "--json",
        ],
        cwd=proj,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    summary = json.loads(
        pack(
            tmp_path,
            "--lock",
            str(lock),
            "-o",
            str(out),
            "--name",
            "hello",
            "--compression",
            "zstd",
            "--level",
            "5",
            "--json",
        ).stdout
    )
    assert sorted(os.listdir(out)) == ["hello-run", "hello.lock.json", "hello.tar.zst"]
    assert summary["verify"]["imported"] >= 3
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "hello-run"), "--cache-dir", str(tmp_path / "nc"), "--", "x"],
        _hide(venv, proj),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["greeting"] == "hello, x"


def test_whole_script_and_extra_file(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    script = (
        "import pathlib, sys, greet\n"
        "data = (pathlib.Path(__file__).parent / 'data' / 'names.txt').read_text().split()\n"
        "if __name__ == '__main__':\n"
        "    print(' | '.join(greet.hello(n) for n in data + sys.argv[1:]))\n"
    )
    proj = _project(tmp_path, script, "run_me.py")
    (proj / "data").mkdir()
    (proj / "data" / "names.txt").write_text("ann bo\n")
    out = tmp_path / "out"
    pack(
        proj,
        "--prefix",
        str(venv),
        "run_me.py",
        "-o",
        str(out),
        "--extra-file",
        "data",
        "--strip",
        "tests,docs",
        "--strip",
        "pyi",
        "--compression",
        "zstd",
    )
    names = _names_zst(out / "run_me.tar.zst")
    assert ".lfm/app/0/data/names.txt" in names and ".lfm/app/0/run_me.py" in names
    assert f"{SITE}/greet/__init__.py" in names
    assert not [
        n
        for n in names
        if n.startswith(f"{SITE}/greet/")
        and n.endswith(("tests/test_greet.py", "docs/index.txt", ".pyi"))
    ]
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "run_me-run"), "--cache-dir", str(tmp_path / "nc"), "--", "cy"],
        _hide(venv, proj),
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello, ann | hello, bo | hello, cy"


def test_compile_ships_valid_bytecode(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    out = tmp_path / "out"
    pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:main",
        "-o",
        str(out),
        "--compile",
        "--compression",
        "none",
    )
    names = _names(out / "main.tar")
    assert "lib/python3.11/__pycache__/os.cpython-311.pyc" in names
    assert f"{SITE}/greet/__pycache__/__init__.cpython-311.pyc" in names
    x = tmp_path / "x"
    x.mkdir()
    archive.extract(str(out / "main.tar"), str(x))
    pyc = (x / "lib/python3.11/__pycache__/os.cpython-311.pyc").read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, unchecked (PEP 552)


# ------------------------------------------------------------------------------ refusals


def test_editable_install_ships_as_source_by_default(tmp_path: Path) -> None:
    """No refusal, no flag: an editable install is the user's code (tests/test_editable.py has
    the real backends); the deprecated --editable-as-source is still accepted."""
    src = tmp_path / "mylib-src"
    (src / "mylib").mkdir(parents=True)
    (src / "mylib" / "__init__.py").write_text("VALUE = 41\n")
    venv = _fake(tmp_path, editable_src=src)
    proj = _project(tmp_path, "import mylib\n\ndef f():\n    return mylib.VALUE + 1\n")
    out = tmp_path / "out"
    ok = pack(
        proj,
        *("--prefix", str(venv), "job.py:f", "-o", str(out), "--json"),
        *("--compression", "zstd"),
    )
    assert any(
        "mylib 0.1: editable install shipped as source" in n for n in json.loads(ok.stdout)["notes"]
    )
    names = _names_zst(out / "f.tar.zst")
    assert ".lfm/app/1/mylib/__init__.py" in names
    assert f"{SITE}/mylib-0.1.dist-info/METADATA" in names
    assert not [n for n in names if n.endswith(".pth")]
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "f-run"), "--cache-dir", str(tmp_path / "nc")], _hide(venv, proj, src)
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == 42
    again = pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:f",
        "-o",
        str(tmp_path / "o2"),
        "--editable-as-source",
        "--no-verify",
    )
    assert "no longer needed" in again.stderr


def test_verification_names_a_file_that_leaks_the_build_prefix(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    (proj / "settings.cfg").write_text(f"cache = {venv}/share/cache\n")
    out = tmp_path / "out"
    args = ("--prefix", str(venv), "job.py:main", "-o", str(out), "--extra-file", "settings.cfg")
    res = pack(proj, *args, "--compression", "none", check=False)
    assert res.returncode == 7, res.stderr
    assert ".lfm/app/0/settings.cfg" in res.stderr
    assert not out.exists()  # the pack created it: removed again, nothing partial
    out.mkdir()
    res = pack(proj, *args, check=False)
    assert res.returncode == 7, res.stderr
    assert os.listdir(out) == []  # the user's dir stays, with nothing partial or unverified


def test_verification_fails_when_a_needed_distribution_is_excluded(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    out = tmp_path / "out"
    res = pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:main",
        "-o",
        str(out),
        "--exclude",
        "greet",
        "--compression",
        "none",
        check=False,
    )
    assert res.returncode == 7, res.stderr
    assert "greet" in res.stderr and "ModuleNotFoundError" in res.stderr
    assert not out.exists()  # the pack created it: removed again, nothing partial


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["job.py:main", "--lock", "x.json"], 2, "exactly one"),
        ([], 2, "exactly one"),
        (["job.py:main", "--strip", "bogus"], 2, "bogus"),
        (["job.py:main", "--compression", "gzip", "--level", "12"], 2, "1..9"),
        (["job.py:main", "--extra-file", "/etc/hostname"], 6, "inside a local root"),
        (["--lock", "bad.json"], 9, "not an lfm-pack analysis"),
    ],
)
def test_usage_and_input_errors(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    (proj / "bad.json").write_text('{"schema": "something/9"}')
    env_args = [] if "--lock" in args else ["--prefix", str(venv)]
    res = pack(proj, *env_args, *args, "-o", str(tmp_path / "out"), check=False)
    assert res.returncode == code, res.stderr
    assert text in res.stderr
    assert "Traceback" not in res.stderr


# ------------------------------------------------------------------------------ real wheels


@pytest.mark.slow
def test_numpy_function_from_a_real_venv(tmp_path: Path) -> None:
    venv = real_venv(["numpy==1.26.4", "requests==2.32.3"])
    proj = _project(
        tmp_path,
        "import ssl\nimport requests\nimport numpy as np\n\n\n"
        "def simulate(n):\n"
        "    return {'sum': float(np.arange(n).sum()), 'ssl': ssl.OPENSSL_VERSION.split()[0]}\n",
    )
    out = tmp_path / "out"
    summary = json.loads(
        pack(proj, "--prefix", str(venv), "job.py:simulate", "-o", str(out), "--json").stdout
    )
    assert summary["distributions"] == ["numpy==1.26.4"]
    names = _names(out / "simulate.tar.gz")
    assert not [n for n in names if "/requests" in n or "/urllib3" in n or "/certifi" in n]
    assert any(n.startswith(f"{SITE}/numpy.libs/") for n in names)
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "simulate-run"), "--cache-dir", str(tmp_path / "nc"), "--", "10"],
        _hide(venv, proj),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"sum": 45.0, "ssl": "OpenSSL"}


def test_include_ships_a_distribution_the_analysis_did_not_see(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    proj = _project(
        tmp_path, "import importlib\n\n\ndef f(m):\n    return importlib.import_module(m).get\n"
    )
    out = tmp_path / "out"
    pack(
        proj,
        "--prefix",
        str(venv),
        "job.py:f",
        "-o",
        str(out),
        "--include",
        "requests",
        "--compression",
        "none",
        "--no-verify",
    )
    names = _names(out / "f.tar")
    assert f"{SITE}/requests/__init__.py" in names
    moved = _moved(out, tmp_path)
    run = run_hidden(
        [str(moved / "f-run"), "--cache-dir", str(tmp_path / "nc"), "--", "requests"],
        _hide(venv, proj),
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "the real requests"


SYSTEM_PY = "/usr/bin/python3.11"


@pytest.mark.skipif(
    not (os.path.exists(SYSTEM_PY) and os.path.isdir("/usr/lib/python3/dist-packages/yaml")),
    reason="needs Debian's python3.11 with python3-yaml",
)
def test_system_python_with_debian_dist_packages(tmp_path: Path) -> None:
    proj = _project(tmp_path, "import yaml\n\n\ndef f(x):\n    return yaml.safe_dump({'x': x})\n")
    out = tmp_path / "out"
    summary = json.loads(
        pack(
            proj,
            "--python",
            SYSTEM_PY,
            "job.py:f",
            "-o",
            str(out),
            "--compression",
            "zstd",
            "--json",
        ).stdout
    )
    assert [d.split("==")[0] for d in summary["distributions"]] == ["PyYAML"]
    assert "/usr/lib/python3/dist-packages" in summary["verify"]["hidden"]
    names = _names_zst(out / "f.tar.zst")
    assert "lib/python3/dist-packages/yaml/__init__.py" in names  # where Debian's site.py looks
    moved = _moved(out, tmp_path)
    hide = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages", str(proj)]
    run = run_hidden(
        [str(moved / "f-run"), "--cache-dir", str(tmp_path / "nc"), "--", "3"], hide, [SYSTEM_PY]
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == "x: 3\n"


def _names_zst(path: Path) -> list[str]:
    out = subprocess.run(
        ["tar", "--zstd", "-tf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_interrupt_leaves_nothing_partial(tmp_path: Path) -> None:
    import signal
    import time

    venv = _fake(tmp_path)
    proj = _project(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*lfm_pack_cmd(), "pack", "--prefix", str(venv), "job.py:main", "-o", str(out)],
        cwd=proj,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(p.name.startswith(".lfm-pack-") for p in out.iterdir()):
            time.sleep(0.3)  # well inside the build (interpreter staging, archive writing)
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the pack finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not out.exists()  # the pack created it: removed again with everything inside


def test_skip_optional_leaves_out_guarded_imports(tmp_path: Path) -> None:
    venv = _fake(tmp_path)
    job = (
        "import greet\n\n\ndef f():\n    try:\n        import requests\n"
        "    except ImportError:\n        requests = None\n"
        "    return [greet.hello('x'), requests is None]\n"
    )
    proj = _project(tmp_path, job)
    full = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:f",
            "-o",
            str(tmp_path / "a"),
            "--no-verify",
            "--compression",
            "none",
            "--json",
        ).stdout
    )
    assert "requests==2.99" in full["distributions"]
    out = tmp_path / "b"
    slim = json.loads(
        pack(
            proj,
            "--prefix",
            str(venv),
            "job.py:f",
            "-o",
            str(out),
            "--skip-optional",
            "--compression",
            "none",
            "--json",
        ).stdout
    )
    assert slim["distributions"] == ["greet==1.0"]
    assert any(
        e["name"] == "requests" and "--skip-optional" in e["reason"] for e in slim["excluded"]
    )
    moved = _moved(out, tmp_path)
    run = run_hidden([str(moved / "f-run"), "--cache-dir", str(tmp_path / "nc")], _hide(venv, proj))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == ["hello, x", True]
