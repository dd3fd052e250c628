"""The result/exception contract between the node and the caller (issues 9.1-2, 12.2-5, 16.3).

Every value kind of tests/fixtures/results/samples.py goes through a real pack of the test
venv (numpy included) and the real launcher: via `Packed.run` (the value with its own type,
exit 0), via the CLI (plain JSON, or a pickle file and a descriptor), and via a warm server.
Exceptions come back as the function's own type. The launcher's bad-input paths, crash
classification and `lfm-pack monitor`'s limit line run against dev packs.
"""

from __future__ import annotations

import base64
import importlib
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from conftest import lfm_pack_cmd
from pythons import base_python
from test_api import shared_pack_cache

import lfm_pack
from lfm_pack.api import Packed, RemoteError
from lfm_pack.launch.devpack import DevPack, build_dev_pack
from lfm_pack.launch.runtime.lfm_runtime.result import UndecodedValue, decode_bytes
from lfm_pack.launch.warm import WarmCallError, WarmServer
from lfm_pack.pack.verify import namespace_argv

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "results"
RUNTIME = Path(lfm_pack.__file__).parent / "launch" / "runtime"
SH = shutil.which("dash") or "/bin/sh"
PYTHON = base_python()


def samples_module() -> types.ModuleType:
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    return importlib.import_module("samples")


@pytest.fixture(scope="module")
def samples() -> types.ModuleType:
    return samples_module()


@pytest.fixture(scope="module")
def packed(samples: types.ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Packed:
    return lfm_pack.pack(
        samples.call,
        tmp_path_factory.mktemp("pack"),
        verify=False,
        cache_dir=shared_pack_cache(tmp_path_factory),
    )


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("node-cache")


# ---------------------------------------------------------------------------- comparing values
def same(got: Any, want: Any) -> bool:
    """Equal and of the same type, all the way down (arrays: dtype, shape and every bit)."""
    import numpy as np

    if type(got) is not type(want):
        return False
    if isinstance(want, np.ma.MaskedArray):
        return bool(np.array_equal(got.mask, want.mask) and np.ma.allequal(got, want))
    if isinstance(want, np.ndarray):
        if got.dtype != want.dtype or got.shape != want.shape:
            return False
        if want.dtype.kind in "fc":
            return bool(np.array_equal(got, want, equal_nan=True))
        return bool(np.array_equal(got, want))
    if isinstance(want, np.generic):
        return got.tobytes() == want.tobytes()
    if isinstance(want, float) and math.isnan(want):
        return math.isnan(got)
    if isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(same(a, b) for a, b in zip(got, want, strict=True))
    if isinstance(want, dict):
        return list(got) == list(want) and all(same(got[k], want[k]) for k in want)
    if isinstance(want, (set, frozenset)):
        return got == want
    fields = getattr(type(want), "__dataclass_fields__", None)
    if fields is not None:
        return all(same(getattr(got, f), getattr(want, f)) for f in fields)
    if hasattr(want, "tzinfo") and want.tzinfo is not None:
        return bool(got == want and got.tzinfo == want.tzinfo and got.fold == want.fold)
    return bool(got == want)


def kinds(samples: types.ModuleType | None = None) -> list[str]:
    return sorted((samples or samples_module()).values())


#: kinds no exact JSON form exists for: they travel pickled (and come back the same)
PICKLED = {"object_array", "masked_array", "datetime64_array", "user_class", "counter"}
PICKLED |= {"ordered_dict"}


# ---------------------------------------------------------------------------- the encoder alone
def test_the_runtime_encoder_never_imports_numpy(tmp_path: Path) -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import datetime, decimal, fractions, pathlib, uuid, dataclasses;"
        "from lfm_runtime.result import encode;"
        "v = [(1, 2), {3}, frozenset(), b'x', 1j, decimal.Decimal('1'), fractions.Fraction(1, 2),"
        " datetime.datetime.now(), datetime.timedelta(1), pathlib.Path('/'),"
        " uuid.uuid4(), {(1,): 2}, object()];"
        "[encode(x, f) for x in v for f in ('json', 'typed', 'pickle')];"
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(RUNTIME)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_a_dict_that_looks_like_a_tag_is_escaped() -> None:
    from lfm_pack.launch.runtime.lfm_runtime.result import encode

    for value in ({"$lfm": "tuple", "v": [1]}, {"$lfm": 1}, [{"$lfm": "unsaved"}]):
        enc = encode(value, "typed")
        assert enc.kind == "json" and decode_bytes(enc.data) == value


# ---------------------------------------------------------------------------- Packed.run
@pytest.mark.parametrize("kind", kinds())
def test_every_kind_comes_back_from_packed_run_with_its_own_type(
    packed: Packed, node_cache: Path, samples: types.ModuleType, kind: str
) -> None:
    res = packed.run("sample", kind, cache_dir=node_cache)
    assert res.exit_code == 0 and res.status == "ok", res.stderr
    want = samples.sample(kind)
    assert res.report is not None
    meta = res.report["value"]
    if kind == "unpicklable":  # cannot leave the node: its type, repr and why, still exit 0
        assert isinstance(res.value, UndecodedValue) and res.value.type == "_thread.lock"
        assert "cannot be pickled" in res.value.reason and "lock" in res.value.repr
        assert meta["encoding"] == "unsaved"
        return
    assert same(res.value, want), (res.value, want)
    assert meta["encoding"] == ("pickle" if kind in PICKLED else "json"), meta
    # what Dask and Parsl do with a Result: pickle it to another process, decode it there
    back = pickle.loads(pickle.dumps(res))
    assert same(back.value, want)


def test_coroutines_and_generators_from_packed_run(
    packed: Packed, node_cache: Path, samples: types.ModuleType
) -> None:
    import numpy as np

    assert same(packed.run("sample", "coroutine", cache_dir=node_cache).value, (42, np.int64(21)))
    assert packed.run("sample", "generator", cache_dir=node_cache).value == [0, 1, 4, 9]
    assert packed.run("sample", "async_generator", cache_dir=node_cache).value == [3, 2, 1]


def test_a_value_whose_type_is_missing_here_is_kept_for_later(
    packed: Packed, node_cache: Path
) -> None:
    res = packed.run("sample", "user_class", cache_dir=node_cache)
    assert res.encoded is not None
    # a process without the samples module on its path (a worker without the user's code)
    code = (
        "import pickle, sys; r = pickle.loads(sys.stdin.buffer.read());"
        "print(type(r.value).__name__, r.value.type, r.value.data is not None)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(res), capture_output=True, check=True
    )
    assert out.stdout.decode().split() == ["UndecodedValue", "samples.Thing", "True"]


# ---------------------------------------------------------------------------- the CLI forms
PLAIN = {
    "tuple": [1, "a", [2.5, None], []],
    "set": [1, 2, 3],
    "odd_keys": None,  # a tuple key: pickled
    "bytes": base64.b64encode(b"\x00\xffbin").decode(),
    "complex": {"real": 1.0, "imag": -2.0},
    "decimal": "1.10",
    "fraction": "1/3",
    "datetime_utc": "2024-01-02T03:04:05.000006+00:00",
    "timedelta": -86394.999993,
    "path": "/data/run 1/out.csv",
    "uuid": "12345678-1234-5678-1234-567812345678",
    "dataclass": {"x": 1, "tags": [2, 3], "data": [0, 1, 2]},
    "ndarray_int32": [[1, -2], [3, 2**31 - 1]],
    "ndarray_complex": [{"real": 1.0, "imag": 2.0}, {"real": 0.0, "imag": -0.5}],
    "np_int64": -7,
    "np_bool": True,
    "tuple_of_arrays": [[0, 1, 2], [[1.0, 1.0], [1.0, 1.0]], "label"],
    "datetime64_array": ["2024-01-01", "2024-01-02"],
}


@pytest.mark.parametrize("kind", sorted(PLAIN))
def test_the_cli_prints_plain_json(packed: Packed, node_cache: Path, kind: str) -> None:
    argv = packed.command("sample", kind, cache_dir=node_cache)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout.strip().splitlines()[-1])
    if PLAIN[kind] is None:
        assert printed["$lfm"] == "file" and printed["encoding"] == "pickle"
        os.unlink(printed["path"])
    else:
        assert printed == PLAIN[kind]


def test_a_non_json_value_is_pickled_beside_the_report_with_a_descriptor(
    packed: Packed, node_cache: Path, tmp_path: Path, samples: types.ModuleType
) -> None:
    rdir = tmp_path / "reports"
    argv = packed.command("sample", "user_class", cache_dir=node_cache, report=f"{rdir}/")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    desc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert desc["$lfm"] == "file" and desc["schema"] == "lfm-pack.value/1"
    assert desc["type"] == "samples.Thing" and desc["encoding"] == "pickle"
    (report,) = rdir.glob("call-*.json")
    assert desc["path"] == str(report).removesuffix(".json") + ".value.pkl"
    assert pickle.loads(Path(desc["path"]).read_bytes()) == samples.Thing(5)
    assert "pickled to" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(report.read_text())["value"]["path"] == desc["path"]
    # without a report: a unique file in the working directory; with --output: that file
    proc = subprocess.run(
        packed.command("sample", "user_class", cache_dir=node_cache),
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    path = Path(json.loads(proc.stdout)["path"])
    assert path.parent == tmp_path and path.name.endswith(".value.pkl")
    out = tmp_path / "out.json"
    argv = packed.command("sample", "user_class", cache_dir=node_cache, output=out)
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout)["path"] == str(out)
    assert pickle.loads(out.read_bytes()) == samples.Thing(5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------------------- exceptions
def test_the_function_s_own_exception_comes_back(
    packed: Packed, node_cache: Path, samples: types.ModuleType
) -> None:
    def raised(kind: str) -> BaseException:
        with pytest.raises(RemoteError) as info:
            packed.run("fail", kind, cache_dir=node_cache)
        assert info.value.exit_code == 81
        return info.value

    err = raised("value")
    assert isinstance(err, ValueError) and type(err).__name__ == "ValueError"
    assert str(err) == "bad value 7" and err.args == ("bad value 7",)
    assert "samples.py" in str(err.__cause__) and "in fail" in str(err.__cause__)
    try:  # an existing handler keeps working
        packed.run("fail", "value", cache_dir=node_cache)
    except ValueError as caught:
        assert caught.exit_code == 81  # type: ignore[attr-defined]
    err = raised("plain_subclass")
    assert isinstance(err, samples.PlainError) and isinstance(err, ValueError)
    err = raised("unpicklable_init")  # rebuilt from its module, args and simple attributes
    assert isinstance(err, samples.SampleError) and str(err) == "7: detail"
    assert err.code == 7  # type: ignore[attr-defined]
    err = raised("os")
    assert isinstance(err, FileNotFoundError)
    assert (err.errno, err.filename) == (2, "/no/such/file")
    assert isinstance(raised("key"), KeyError)
    err = raised("async")
    assert isinstance(err, KeyError) and "from a coroutine" in str(err)
    assert "asyncio" not in err.remote_traceback.split("Traceback")[1].splitlines()[1]
    assert isinstance(raised("generator"), ZeroDivisionError)
    # a type that exists only on the node: the plain RemoteError, as before
    err = raised("local")
    assert type(err) is RemoteError and err.remote_type.endswith("LocalError")
    assert "defined inside the function" in str(err)
    # pickled to a Dask/Parsl client and rebuilt there, the same type again
    back = pickle.loads(pickle.dumps(raised("unpicklable_init")))
    assert isinstance(back, samples.SampleError) and isinstance(back, RemoteError)
    assert back.code == 7 and back.exit_code == 81  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- warm mode
def test_warm_server_values_exceptions_coroutines_and_generators(
    packed: Packed, node_cache: Path, samples: types.ModuleType
) -> None:
    import numpy as np

    with WarmServer(packed.launcher, cache_dir=node_cache, sh=SH) as srv:
        for kind in kinds(samples):
            got = srv.call("sample", kind)
            if kind == "unpicklable":
                assert isinstance(got, UndecodedValue)
            else:
                assert same(got, samples.sample(kind)), kind
        assert same(srv.call("sample", "coroutine"), (42, np.int64(21)))
        assert srv.call("sample", "generator") == [0, 1, 4, 9]
        assert srv.call("sample", "async_generator") == [3, 2, 1]
        with pytest.raises(ValueError, match="bad value 7") as info:
            srv.call("fail", "value")
        assert isinstance(info.value, WarmCallError) and info.value.result.exit_code == 81
        with pytest.raises(samples.SampleError) as sinfo:
            srv.call("fail", "unpicklable_init")
        assert sinfo.value.code == 7 and "in fail" in str(sinfo.value.__cause__)
        with pytest.raises(WarmCallError) as winfo:
            srv.call("fail", "local")
        assert type(winfo.value) is WarmCallError
        back = pickle.loads(pickle.dumps(sinfo.value))
        assert isinstance(back, samples.SampleError) and isinstance(back, WarmCallError)


# ---------------------------------------------------------------------------- Dask and Parsl
# (~20 s each on a loaded 2-core machine: slow-marked; test_dask/test_parsl check the exception
# type in the default suite)
@pytest.mark.slow
def test_values_and_exceptions_through_dask(
    packed: Packed, node_cache: Path, samples: types.ModuleType
) -> None:
    distributed = pytest.importorskip("distributed")
    from lfm_pack.scale import dask as lfm_dask

    with (
        distributed.LocalCluster(
            n_workers=1, processes=True, threads_per_worker=2, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [
            lfm_dask.submit(client, packed, "sample", kind, cache_dir=node_cache)
            for kind in ("tuple_of_arrays", "user_class", "datetime_zone", "dataclass")
        ]
        for fut, kind in zip(
            futures, ("tuple_of_arrays", "user_class", "datetime_zone", "dataclass"), strict=True
        ):
            assert same(fut.result().value, samples.sample(kind)), kind
        bad = lfm_dask.submit(client, packed, "fail", "unpicklable_init", cache_dir=node_cache)
        with pytest.raises(samples.SampleError) as info:
            bad.result()
        assert isinstance(info.value, RemoteError) and info.value.code == 7  # type: ignore[attr-defined]


@pytest.mark.slow
def test_values_and_exceptions_through_parsl(
    packed: Packed, node_cache: Path, samples: types.ModuleType, tmp_path: Path
) -> None:
    parsl = pytest.importorskip("parsl")
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    from lfm_pack.scale import parsl as lfm_parsl

    old_path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + old_path
    config = Config(
        executors=[
            HighThroughputExecutor(
                label="htex_results",
                address="127.0.0.1",
                max_workers_per_node=1,
                provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
            )
        ],
        run_dir=str(tmp_path / "runinfo"),
        strategy="none",
    )
    kernel = parsl.load(config)
    try:
        app = lfm_parsl.python_app(packed, cache_dir=node_cache)
        assert same(
            app("sample", "tuple_of_arrays").result().value, samples.sample("tuple_of_arrays")
        )
        assert app("sample", "user_class").result().value == samples.Thing(5)
        with pytest.raises(ValueError, match="bad value 7") as info:
            app("fail", "value").result()
        assert isinstance(info.value, RemoteError)
    finally:
        kernel.cleanup()
        parsl.clear()
        os.environ["PATH"] = old_path


# ---------------------------------------------------------------------------- dev-pack paths
JOB = """
import asyncio, ctypes, mmap, os, signal, sys, tempfile, time

def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}

def touch(path):
    open(path, "w").close()
    return "touched"

def big(n):
    return "x" * n

async def adouble(x):
    await asyncio.sleep(0.01)
    return (x, x * 2)

def squares(n):
    for i in range(n):
        yield i * i

async def countdown(n):
    while n:
        yield n
        n -= 1

def segv():
    ctypes.string_at(0)

def abort():
    os.abort()

def bus():
    with tempfile.TemporaryFile() as fh:
        fh.truncate(mmap.PAGESIZE)
        m = mmap.mmap(fh.fileno(), mmap.PAGESIZE)
        fh.truncate(0)
        return m[0]

def raise_signal(name):
    signal.raise_signal(getattr(signal, name))

def pid_then_sleep(path, s):
    with open(path + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(path + ".tmp", path)
    time.sleep(s)
"""

TARGETS = ["echo", "touch", "big", "adouble", "squares", "countdown", "segv", "abort", "bus"]
TARGETS += ["raise_signal", "pid_then_sleep"]


def _t(qualname: str) -> dict[str, Any]:
    return {
        "raw": f"job.py:{qualname}",
        "kind": "file",
        "module": "job",
        "app_path": ".lfm/app/0/job.py",
        "qualname": qualname,
    }


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> tuple[DevPack, Path]:
    pk = build_dev_pack(
        tmp_path_factory.mktemp("devpack"),
        name="job",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[_t(t) for t in TARGETS],
    )
    cache = tmp_path_factory.mktemp("dev-cache") / "c"
    first = launch(pk, cache, "--target", "echo", "--", "1")
    assert first.returncode == 0, first.stderr
    return pk, cache


def launch(
    pk: DevPack, cache: Path, *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [SH, str(pk.launcher), "--cache-dir", str(cache), *args],
        capture_output=True,
        input=stdin,
        timeout=120,
        cwd=cwd,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_async_and_generator_targets_single_shot_and_warm(dev: tuple[DevPack, Path]) -> None:
    pk, cache = dev
    for target, arg, want in (
        ("adouble", "4", [4, 8]),
        ("squares", "4", [0, 1, 4, 9]),
        ("countdown", "3", [3, 2, 1]),
    ):
        p = launch(pk, cache, "--target", target, "--", arg)
        assert p.returncode == 0 and json.loads(p.stdout) == want, p.stderr
        with WarmServer(pk.launcher, cache_dir=cache, target=target, sh=SH) as srv:
            got = srv.call(int(arg))
            assert got == (tuple(want) if target == "adouble" else want)


def test_report_dir_gets_a_unique_report_inside(dev: tuple[DevPack, Path], tmp_path: Path) -> None:
    pk, cache = dev
    rdir = tmp_path / "reports"
    rdir.mkdir()
    for _ in range(2):
        p = launch(pk, cache, "--target", "echo", "--report", str(rdir), "--", "1")
        assert p.returncode == 0 and json.loads(p.stdout) == {"args": [1], "kwargs": {}}
        assert p.stderr == ""
    names = sorted(p.name for p in rdir.iterdir())
    assert len(names) == 2 and all(n.startswith("job-") and n.endswith(".json") for n in names)
    assert {json.loads((rdir / n).read_text())["status"] for n in names} == {"ok"}
    # a failure before the monitor exists (written by the sh part) goes inside the directory too
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    for where in (str(rdir), f"{tmp_path}/new-dir/"):
        p = subprocess.run(
            [SH, str(pk.launcher), "--cache-dir", str(link), "--report", where, "--", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 83 and "symlink" in one_line(p.stderr)
    early = [
        json.loads(f.read_text()) for f in [*rdir.iterdir(), *(tmp_path / "new-dir").iterdir()]
    ]
    assert sorted(r["status"] for r in early) == ["infrastructure", "infrastructure", "ok", "ok"]
    assert not [f for f in rdir.iterdir() if not f.name.endswith(".json")]
    # a report place that cannot be written is refused before the call
    marker = tmp_path / "called"
    p = launch(pk, cache, "--target", "touch", "--report", "/proc/lfm/r.json", "--", str(marker))
    assert p.returncode == 87 and "--report" in one_line(p.stderr) and not marker.exists()


def test_output_checked_before_the_call(dev: tuple[DevPack, Path], tmp_path: Path) -> None:
    pk, cache = dev
    marker = tmp_path / "called"
    for out, why in (
        (tmp_path / "missing" / "out.json", "does not exist"),
        (tmp_path, "is a directory"),
        (Path("/proc/lfm-out.json"), ""),
        (tmp_path / "file" / "out.json", "does not exist"),
    ):
        (tmp_path / "file").touch()
        p = launch(pk, cache, "--target", "touch", "--output", str(out), "--", str(marker))
        line = one_line(p.stderr)
        assert p.returncode == 87 and "--output" in line and why in line, p.stderr
        assert not marker.exists() and p.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(namespace_argv() is None, reason="needs a mount namespace (tmpfs)")
def test_a_full_or_read_only_filesystem_is_an_output_error(
    dev: tuple[DevPack, Path], tmp_path: Path
) -> None:
    pk, cache = dev
    ns = namespace_argv()
    assert ns is not None
    small = tmp_path / "small"
    small.mkdir()
    script = 'mount -t tmpfs -o "$1" lfm-test "$2" && shift 2 && exec "$@"'

    def inside(opts: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            *ns,
            "sh",
            "-c",
            script,
            "sh",
            opts,
            str(small),
            SH,
            str(pk.launcher),
            "--cache-dir",
            str(cache),
            *args,
        ]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    p = inside("size=64k", "--target", "big", "--output", f"{small}/v.json", "--", "1000000")
    assert p.returncode == 87, p.stderr
    assert "No space left on device" in one_line(p.stderr)
    p = inside("ro", "--target", "big", "--output", f"{small}/v.json", "--", "10")
    assert p.returncode == 87 and "Read-only file system" in one_line(p.stderr)
    assert list(small.iterdir()) == []  # nothing left under the tmpfs either (it is gone)


def test_input_problems_are_usage_errors_before_the_call(
    dev: tuple[DevPack, Path], tmp_path: Path
) -> None:
    pk, cache = dev
    marker = tmp_path / "called"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"args": [1,')
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"argz": []}')
    empty = tmp_path / "empty.json"
    empty.write_text("")
    missing_mod = tmp_path / "in.pkl"
    missing_mod.write_bytes(b"clfm_no_such_module\nX\n.")  # a class from a missing module
    rep = tmp_path / "r.json"
    cases = [
        (["--input", str(tmp_path / "nope.json")], "No such file"),
        (["--input", str(tmp_path)], "Is a directory"),
        (["--input", str(bad_json)], "not valid JSON"),
        (["--input", str(wrong)], "must hold an object"),
        (["--input", str(empty)], "is empty"),
        (["--input", str(missing_mod), "--input-format", "pickle"], "not valid pickle"),
    ]
    for args, why in cases:
        p = launch(pk, cache, "--target", "touch", "--report", str(rep), *args)
        assert p.returncode == 85 and why in one_line(p.stderr), p.stderr
        assert not marker.exists() and p.stdout == ""
        r = json.loads(rep.read_text())
        assert r["status"] == "usage" and r["error"]["phase"] == "input"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["bad.json", "wrong.json", "empty.json", "in.pkl", "r.json"]
    )


def test_input_from_stdin(dev: tuple[DevPack, Path]) -> None:
    pk, cache = dev
    data = {"args": [1, [2]], "kwargs": {"k": "v"}}
    p = launch(pk, cache, "--target", "echo", "--input", "-", stdin=json.dumps(data).encode())
    assert p.returncode == 0 and json.loads(p.stdout) == {"args": [1, [2]], "kwargs": {"k": "v"}}
    blob = pickle.dumps({"args": [(1, 2)], "kwargs": {}})
    p = launch(
        pk,
        cache,
        "--target",
        "echo",
        "--input",
        "-",
        "--input-format",
        "pickle",
        "--output-format",
        "typed",
        "--output",
        "/dev/stdout",
        stdin=blob,
    )
    assert p.returncode == 0, p.stderr
    assert decode_bytes(p.stdout.encode()) == {"args": [(1, 2)], "kwargs": {}}
    p = launch(pk, cache, "--target", "echo", "--input", "-", stdin=b"")
    assert p.returncode == 85 and "stdin is empty" in one_line(p.stderr)


CRASHES = [
    ("segv", [], "SIGSEGV", "segmentation fault"),
    ("abort", [], "SIGABRT", "abort()"),
    ("bus", [], "SIGBUS", "bus error"),
    ("raise_signal", ["SIGFPE"], "SIGFPE", "arithmetic"),
    ("raise_signal", ["SIGILL"], "SIGILL", "illegal instruction"),
]


@pytest.mark.parametrize(("target", "args", "sig", "words"), CRASHES)
def test_a_crash_of_the_task_is_a_crash(
    dev: tuple[DevPack, Path], tmp_path: Path, target: str, args: list[str], sig: str, words: str
) -> None:
    pk, cache = dev
    rep = tmp_path / "r.json"
    p = launch(pk, cache, "--target", target, "--report", str(rep), "--", *args)
    assert p.returncode == 128 + getattr(signal, sig)
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("lfm:")]
    assert line == [line[0]] and f"crashed with {sig}" in line[0] and words in line[0]
    r = json.loads(rep.read_text())
    assert (r["status"], r["ended_by"], r["exit"]["signal"]) == ("crashed", "task", sig)
    assert r["error"]["type"] == "Crash"


def test_a_kill_from_outside_is_not_a_crash(dev: tuple[DevPack, Path], tmp_path: Path) -> None:
    pk, cache = dev
    rep = tmp_path / "r.json"
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen(
        [
            SH,
            str(pk.launcher),
            "--cache-dir",
            str(cache),
            "--target",
            "pid_then_sleep",
            "--report",
            str(rep),
            "--",
            str(pidfile),
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)  # e.g. a user's `kill -9 <task pid>`
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGKILL
    r = json.loads(rep.read_text())
    assert (r["status"], r["ended_by"]) == ("signal", "external-signal")
    assert "from outside" in one_line(err)


def test_monitor_prints_the_same_limit_line_as_the_launcher(
    dev: tuple[DevPack, Path], tmp_path: Path
) -> None:
    pk, cache = dev
    hog = "b = bytearray(500 * 2**20); import time; time.sleep(5)"
    mon = subprocess.run(
        [*lfm_pack_cmd(), "monitor", "--memory", "100M", "--", sys.executable, "-c", hog],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert mon.returncode == 82
    mline = one_line(mon.stderr)
    run = launch(pk, cache, "--memory", "100M", "--exec", "--", "python", "-c", hog)
    assert run.returncode == 82
    lline = one_line(run.stderr)
    for line in (mline, lline):
        assert line.startswith("lfm: limit: memory limit exceeded: observed ")
        assert line.endswith("> limit 100.0 MiB; the monitor ended the task")
