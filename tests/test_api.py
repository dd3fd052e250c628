"""The Python API: live functions -> targets, pack, run through the real launcher, argv, staging.

Every run goes through the real `<name>-run` (sh, tar, the packed interpreter, the monitor); the
pack is built once per session (shared pack cache) from the Monte Carlo example.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lfm_pack
from lfm_pack.api import Packed, Result, load, target_of
from lfm_pack.errors import LfmError, TargetError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "montecarlo"


def example_job() -> types.ModuleType:
    """`job` imported the way a user's script would (its directory on sys.path)."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    return importlib.import_module("job")


def shared_pack_cache(factory: pytest.TempPathFactory) -> Path:
    """One pack cache for this pytest session (and all its xdist workers): built once.

    Never shared across sessions: a cached pack would hide changes to the pack/launcher code.
    """
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/popen-gwK -> pytest-N, the session's own directory
    return base / "lfm-api-pack-cache"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Packed:
    job = example_job()
    out = tmp_path_factory.mktemp("pack")
    return lfm_pack.pack(
        job.simulate, out, verify=False, cache_dir=shared_pack_cache(tmp_path_factory)
    )


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One node cache for the runs that do not test cache misses (unpacking costs ~2 s)."""
    return tmp_path_factory.mktemp("node-cache")


# ---- `lfm_pack.analyze` / `lfm_pack.pack` are both the API and the subpackages ----------------


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_callable_subpackages_in_a_fresh_interpreter_either_import_order() -> None:
    proc = _fresh(
        """
        import lfm_pack.analyze.pipeline as pl
        from lfm_pack.analyze.pipeline import run_analysis
        import lfm_pack.analyze.reach
        import lfm_pack.pack.build
        import lfm_pack
        assert pl.run_analysis is run_analysis
        assert lfm_pack.analyze.pipeline.run_analysis is run_analysis
        assert lfm_pack.pack.build.build_pack is not None
        a = lfm_pack.analyze("examples/montecarlo/job.py:simulate")
        print(sorted(p.name for p in a.packages), a.targets[0].qualname)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['numpy']", "simulate"]
    proc = _fresh(
        """
        import lfm_pack, inspect
        a = lfm_pack.analyze("examples/montecarlo/job.py:simulate")
        from lfm_pack.analyze.pipeline import run_analysis
        import lfm_pack.analyze.reach as r
        print(type(a).__name__, callable(lfm_pack.pack), "outdir" in str(inspect.signature(lfm_pack.pack)))
        print(r.__name__, lfm_pack.__version__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Analysis", "True", "True", "lfm_pack.analyze.reach", "0.1.0"]


def test_api_usage_is_mypy_strict_clean(tmp_path: Path) -> None:
    user = tmp_path / "user_code.py"
    user.write_text(
        textwrap.dedent(
            """
            import lfm_pack
            from lfm_pack.analyze.pipeline import run_analysis
            from lfm_pack.models import Analysis

            def go(fn: object) -> int:
                a: Analysis = lfm_pack.analyze("job.py:simulate")
                b: Analysis = run_analysis(["job.py:simulate"])
                p: lfm_pack.Packed = lfm_pack.pack(a, "dist", compression="zstd")
                r: lfm_pack.Result = p.run(1, seed=2, memory="1G")
                argv: list[str] = p.command(1, 2, wall_time=60)
                return r.exit_code + len(argv) + len(b.packages)

            def bad() -> None:
                lfm_pack.pack("job.py:f", compression="lzma")
            """
        )
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            str(user),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT)},  # the editable install is a finder hook
    )
    # exactly one error: the misspelled compression (proves the API types are really checked)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stdout.splitlines() if ": error:" in ln]
    assert len(errors) == 1 and "compression" in errors[0] and ":15:" in errors[0], proc.stdout


# ---- live functions -> targets -----------------------------------------------------------------


def _module_from_source(tmp_path: Path, name: str, source: str) -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


class Holder:
    @staticmethod
    def static(x: int) -> int:
        return x

    @classmethod
    def klass(cls, x: int) -> int:
        return x

    def method(self, x: int) -> int:
        return x


def test_target_of_functions_and_methods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = example_job()
    monkeypatch.chdir(EXAMPLE)  # inside the cwd: what a CLI user would type there
    assert target_of(job.simulate) == "job.py:simulate"
    monkeypatch.chdir(tmp_path)  # elsewhere: the absolute path
    assert target_of(job.simulate) == f"{os.path.realpath(EXAMPLE / 'job.py')}:simulate"
    here = os.path.realpath(__file__)
    assert target_of(Holder.static) == f"{here}:Holder.static"
    assert target_of(Holder.klass) == f"{here}:Holder.klass"
    # installed code is targeted by module name (found on the env's path, never copied as a file)
    assert target_of(json.dumps) == "json:dumps"
    import click

    assert target_of(click.echo) == "click.utils:echo"
    mod = _module_from_source(
        tmp_path,
        "lfm_api_wrapped",
        """
        import functools
        def deco(f):
            @functools.wraps(f)
            def inner(*a, **k):
                return f(*a, **k)
            return inner
        @deco
        def work(x):
            return x
        """,
    )
    assert target_of(mod.work) == "lfm_api_wrapped.py:work"  # cwd is tmp_path


def _nested() -> Any:
    def inner() -> None:
        return None

    return inner


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: lambda x: x, "lambda"),
        (_nested, "inside another function"),
        (lambda: Holder().method, "bound to an instance"),
        (lambda: len, "not a Python function"),
        (lambda: functools.partial(json.dumps, indent=2), "not a Python function"),
    ],
)
def test_target_of_rejects_what_a_node_cannot_import(make: Any, words: str) -> None:
    with pytest.raises(TargetError, match=words) as info:
        target_of(make())
    assert info.value.hint


def test_target_of_rejects_interactive_and_redefined_functions(tmp_path: Path) -> None:
    shell = types.ModuleType("lfm_api_shell")  # what a REPL / exec'd cell gives: no __file__
    exec("def f(x):\n    return x\n", shell.__dict__)
    sys.modules["lfm_api_shell"] = shell
    try:
        with pytest.raises(TargetError, match="interactively") as info:
            target_of(shell.f)
        assert "save the function in a .py file" in (info.value.hint or "")
    finally:
        del sys.modules["lfm_api_shell"]
    mod = _module_from_source(tmp_path, "lfm_api_redef", "def g():\n    return 1\n")
    old = mod.g
    exec("def g():\n    return 2\n", mod.__dict__)
    with pytest.raises(TargetError, match="is not this function"):
        target_of(old)


def test_a_script_main_function_is_packed_from_its_file(tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import lfm_pack

            def twice(x):
                return 2 * x

            if __name__ == "__main__":
                print(lfm_pack.api.target_of(twice))
                a = lfm_pack.analyze(twice)
                print(a.targets[0].qualname, a.env.executable == sys.executable, len(a.packages))
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{os.path.realpath(script)}:twice", "twice", "True", "0"]


def test_analyze_a_live_function_matches_the_string_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from lfm_pack.pack.manifest import env_key
    from lfm_pack.pack.select import Options

    job = example_job()
    monkeypatch.chdir(EXAMPLE)
    live = lfm_pack.analyze(job.simulate)
    text = lfm_pack.analyze("job.py:simulate", python=sys.executable)
    # the same lock, hence the same env key as `lfm-pack pack job.py:simulate` run here
    assert env_key(live, Options(), "gzip", None) == env_key(text, Options(), "gzip", None)
    assert [p.name for p in live.packages] == [p.name for p in text.packages] == ["numpy"]
    assert live.local_files == text.local_files
    assert "requests" in {p.module for p in live.placeholders}
    assert live.placeholders == text.placeholders


# ---- run through the launcher ----------------------------------------------------------------


def test_run_returns_value_and_report(packed: Packed, tmp_path: Path) -> None:
    job = example_job()
    cache = tmp_path / "cache"
    report = tmp_path / "r.json"
    first = packed.run(20_000, seed=3, cache_dir=cache, report=report)
    assert first.value == job.simulate(20_000, 3)
    assert first.exit_code == 0 and first.ok and first.status == "ok"
    assert first.cache_hit is False and first.report_path == str(report)
    assert first.report is not None and json.loads(report.read_text()) == first.report
    assert first.report["env_key"] == packed.env_key
    second = packed.run(samples=1000, seed=1, cache_dir=cache)
    assert second.cache_hit is True and second.report_path is None
    assert second.value == job.simulate(1000, 1)
    # a directory as `report` gets one unique file per run
    rdir = tmp_path / "reports"
    rdir.mkdir()
    packed.run(10, cache_dir=cache, report=rdir)
    packed.run(10, cache_dir=cache, report=rdir)
    assert len(list(rdir.glob("simulate-*.json"))) == 2


def test_function_error_raises_remote_error_with_the_remote_traceback(
    packed: Packed, node_cache: Path
) -> None:
    with pytest.raises(lfm_pack.RemoteError) as info:
        packed.run("many", cache_dir=node_cache)
    err = info.value
    assert err.exit_code == 81 and err.remote_type == "TypeError"
    assert "helpers.py" in err.remote_traceback and "estimate_pi" in err.remote_traceback
    # the function's own type (an existing `except TypeError:` still works), its own message,
    # and the node's traceback as the cause
    assert isinstance(err, TypeError) and type(err).__name__ == "TypeError"
    assert str(err) == "'str' object cannot be interpreted as an integer"
    assert "estimate_pi" in str(err.__cause__)
    # it survives pickling (Dask and Parsl send it back to the client)
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, lfm_pack.RemoteError) and isinstance(back, TypeError)
    assert back.remote_traceback == err.remote_traceback and back.exit_code == 81
    # check=False hands the failed Result back instead
    res = packed.run("many", cache_dir=node_cache, check=False)
    assert res.exit_code == 81 and res.value is None and res.error is not None
    assert res.error["type"] == "TypeError"


def test_memory_limit_raises_limit_exceeded(packed: Packed, node_cache: Path) -> None:
    with pytest.raises(lfm_pack.LimitExceeded) as info:
        packed.run(40_000_000, memory="150M", cache_dir=node_cache)
    assert info.value.exit_code == 82
    assert info.value.result.report is not None
    assert "memory" in info.value.result.report["limits_exceeded"]


def test_pickle_serializer_round_trips_non_json_values(packed: Packed, node_cache: Path) -> None:
    res = packed.run(1000, seed=5, serializer="pickle", cache_dir=node_cache)
    assert isinstance(res.value, dict) and res.value["samples"] == 1000


def test_a_missing_archive_is_a_launch_error(packed: Packed, tmp_path: Path) -> None:
    moved = Packed(
        packed.name, str(tmp_path / "gone.tar.gz"), packed.launcher, None, packed.env_key
    )
    with pytest.raises(lfm_pack.LaunchError, match="archive not found") as info:
        moved.run(10, cache_dir=tmp_path / "fresh")
    assert info.value.exit_code == 83


# ---- argv for other executors, staging, loading ------------------------------------------------


def test_command_is_a_runnable_argv(packed: Packed, tmp_path: Path, node_cache: Path) -> None:
    job = example_job()
    argv = packed.command(5000, 9, cache_dir=node_cache, report=tmp_path / "r.json")
    assert argv[0] == packed.launcher and argv[-3:] == ["--", "5000", "9"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == job.simulate(5000, 9)
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "ok"
    # a report directory: each run of the same argv writes its own report
    rdir = tmp_path / "reports"
    argv = packed.command(100, 1, cache_dir=node_cache, report=f"{rdir}/")
    assert argv[:2] == ["env", f"LFM_REPORT_DIR={rdir}"]
    for _ in range(2):
        subprocess.run(argv, check=True, capture_output=True)
    assert len(list(rdir.glob("simulate-*.json"))) == 2
    # strings stay strings on the command line (JSON-encoded), kwargs go through an input file
    assert packed.command("42")[-1] == '"42"'
    with pytest.raises(LfmError, match="input file"):
        packed.command(1, seed=2)
    argv = packed.command(
        samples=300,
        seed=4,
        input=tmp_path / "in.json",
        output=tmp_path / "out.json",
        cache_dir=node_cache,
    )
    assert json.loads((tmp_path / "in.json").read_text()) == {
        "args": [],
        "kwargs": {"samples": 300, "seed": 4},
    }
    subprocess.run(argv, check=True, capture_output=True)
    assert json.loads((tmp_path / "out.json").read_text()) == job.simulate(300, 4)


def test_stage_copies_and_the_staged_pack_runs_without_the_original(
    packed: Packed, tmp_path: Path, node_cache: Path
) -> None:
    job = example_job()
    original = tmp_path / "orig"
    shutil.copytree(Path(packed.launcher).parent, original)
    local = load(original / f"{packed.name}-run")
    assert local.env_key == packed.env_key and local.lock is not None
    shared = local.stage(tmp_path / "shared")
    again = local.stage(tmp_path / "shared")  # identical files are kept, not re-copied
    assert again == shared
    assert Path(shared.archive).parent == tmp_path / "shared"
    shutil.rmtree(original)
    res = shared.run(700, seed=2, cache_dir=node_cache)
    assert res.value == job.simulate(700, 2)
    with pytest.raises(LfmError, match="not an lfm-pack launcher"):
        load(shared.lock or "")


def test_pack_without_outdir_reuses_the_pack(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = example_job()
    monkeypatch.setenv("LFM_PACK_DIR", str(tmp_path / "packs"))
    cache = shared_pack_cache(tmp_path_factory)
    first = lfm_pack.pack(job.simulate, verify=False, cache_dir=cache)
    assert Path(first.launcher).parent.parent == tmp_path / "packs"
    assert Path(first.launcher).parent.name == f"simulate-{first.env_key[:16]}"
    stamp = os.stat(first.archive).st_mtime_ns
    second = lfm_pack.pack(job.simulate, verify=False)
    assert second == first and second.build is None  # found on disk, nothing rebuilt
    assert os.stat(first.archive).st_mtime_ns == stamp


def test_unresolvable_imports_refuse_to_pack(tmp_path: Path) -> None:
    mod = _module_from_source(
        tmp_path,
        "lfm_api_missing",
        "def f():\n    import lfm_no_such_module_anywhere\n    return 1\n",
    )
    with pytest.raises(LfmError, match="lfm_no_such_module_anywhere"):
        lfm_pack.pack(mod.f, tmp_path / "out", verify=False)


@pytest.fixture(autouse=True)
def _no_stray_modules() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("lfm_api_"):
            del sys.modules[name]


def test_packed_pickles_as_its_paths_only(packed: Packed) -> None:
    assert packed.build is not None and packed.build.env_key == packed.env_key
    back = pickle.loads(pickle.dumps(packed))
    assert back == packed and back.build is None
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print(sorted(m for m in "
            "sys.modules if m.startswith(('lfm_pack.pack.', 'libcst', 'click'))))",
        ],
        input=pickle.dumps(packed),
        capture_output=True,
        check=True,
    )
    assert proc.stdout.decode().strip() == "[]"  # a worker unpickling it loads no packing code


def test_result_check_passes_through_success() -> None:
    ok = Result(value=1, exit_code=0)
    assert ok.check() is ok and ok.status == "ok" and ok.cache_hit is None
