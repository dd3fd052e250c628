"""Fuzzing the analyzer (issue 6 item 5): whatever the source, a result or a clear error.

The property, for every input: `parse_target` + `reach` either return a `ReachResult` or raise
an `LfmError` subclass (one line + hint, a documented exit code) - never another exception,
never a crash of the process, and within a time bound. A broken *local* module (imported by a
good target) must never stop the analysis: it becomes a finding.

Inputs: random text and random bytes; real stdlib modules mutated (bytes deleted, inserted,
duplicated, truncated, null bytes, deep nesting spliced in); generated *valid* programs with
imports, guards, relative imports and nested defs (for which the result must also be exact
and deterministic); odd encodings and BOMs; pathological nesting and huge files; rings of
cyclic local imports. The corpus of hand-made attacks runs in a subprocess, because before
lfm_pack/analyze/parse_guard.py existed two of them *segfaulted* the interpreter (libcst's
native parser on 5,000 nested parentheses) and a crash must fail one test, not the run.

Default run: bounded example counts (see `FAST`); `-m slow` runs the `LONG` profile.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.parse_guard import MAX_NESTING, MAX_SOURCE_BYTES
from lfm_pack.analyze.reach import reach
from lfm_pack.analyze.targets import parse_target
from lfm_pack.errors import LfmError, TargetError
from lfm_pack.models import EnvInfo, ReachResult

TIME_BOUND_S = 60.0  # per example, on a loaded 2-core machine; typical is < 0.1 s
FAST = settings(
    max_examples=100,
    deadline=None,  # our own wall-clock bound below: hypothesis' deadline is flaky under load
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=False,
)
LONG = settings(FAST, max_examples=1500)


@pytest.fixture(scope="module")
def env() -> EnvInfo:
    return probe()


@pytest.fixture(scope="module", autouse=True)
def _shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One summary cache for all examples of this module (keys are content hashes)."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("fuzz-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


def analyse(
    files: dict[str, bytes], target: str, env: EnvInfo, runs: int = 1
) -> ReachResult | LfmError:
    """Write `files` into a fresh project and analyse `target`: the property's one check.

    With `runs` > 1 the analysis is repeated in the same project (warm: summaries now come
    from the cache) and must give the identical outcome.
    """
    with tempfile.TemporaryDirectory() as d:
        for rel, data in files.items():
            p = Path(d) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        outcomes: list[ReachResult | LfmError] = []
        for _ in range(runs):
            t0 = time.monotonic()
            try:
                spec = parse_target(target, env, d)
                out: ReachResult | LfmError = reach([spec], env)
            except LfmError as exc:
                assert exc.message and "\n" not in exc.message, exc.message
                assert exc.exit_code != 1, "INTERNAL exit code for a user error"
                out = exc
            # Any other exception propagates and fails the property with its traceback.
            elapsed = time.monotonic() - t0
            assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
            outcomes.append(out)
        first = outcomes[0]
        for other in outcomes[1:]:
            if isinstance(first, LfmError):
                assert isinstance(other, LfmError) and other.message == first.message
            else:
                assert other == first
        return first


GOOD_TARGET = b"import helper\n\n\ndef main():\n    return helper.run()\n"


def analyse_as_local(helper: bytes, env: EnvInfo) -> ReachResult:
    """A good target importing a hostile local module: must be a result, never an error."""
    out = analyse({"job.py": GOOD_TARGET, "helper.py": helper}, "job.py:main", env)
    assert isinstance(out, ReachResult), out
    assert any(f.endswith("helper.py") for f in out.local_files)
    return out


# ------------------------------------------------------------------ random text and bytes


def _text_property(env: EnvInfo, src: str) -> None:
    analyse({"t.py": src.encode("utf-8", "surrogatepass")}, "t.py", env)


def _bytes_property(env: EnvInfo, data: bytes) -> None:
    analyse({"t.py": data}, "t.py", env)
    analyse_as_local(data, env)


# Python-looking token soup: far more likely than uniform text to reach the parsers' corners.
PYTHONISH = st.lists(
    st.sampled_from(
        [
            *"abcxyz_ ().,:;[]{}=+-*/@'\"#\\\n\t01",
            "import ",
            "from ",
            "def ",
            "if ",
            "    ",
            "lambda ",
            "try:",
            "except ImportError:",
            "class ",
            "return ",
            "__import__('",
            "f'{",
        ]
    ),
    max_size=120,
).map("".join)


@FAST
@given(src=st.one_of(st.text(max_size=400), PYTHONISH))
def test_random_text(env: EnvInfo, src: str) -> None:
    _text_property(env, src)


@FAST
@given(data=st.binary(max_size=400))
def test_random_bytes(env: EnvInfo, data: bytes) -> None:
    _bytes_property(env, data)


@pytest.mark.slow
@LONG
@given(src=st.one_of(st.text(max_size=2000), PYTHONISH), data=st.binary(max_size=2000))
def test_random_text_and_bytes_long(env: EnvInfo, src: str, data: bytes) -> None:
    _text_property(env, src)
    _bytes_property(env, data)


# ------------------------------------------------------------------ mutated real files


def _stdlib_sources() -> list[bytes]:
    """Small real modules (100-500 lines: mutations stay cheap to analyse cold)."""
    import colorsys
    import json.decoder
    import shlex
    import textwrap as tw

    mods = (tw, json.decoder, colorsys, shlex)
    return [Path(m.__file__).read_bytes() for m in mods if m.__file__]


SOURCES = _stdlib_sources()

MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [
    lambda b, r: b[: r.randrange(len(b))],  # truncate
    lambda b, r: (lambda i, j: b[:i] + b[j:])(*sorted((r.randrange(len(b)), r.randrange(len(b))))),
    lambda b, r: (lambda i: b[:i] + bytes(r.randrange(256) for _ in range(8)) + b[i:])(
        r.randrange(len(b))
    ),
    lambda b, r: (lambda i: b[:i] + b"\x00" + b[i:])(r.randrange(len(b))),
    lambda b, r: (lambda i: b[:i] + b"(" * 300 + b[i:])(r.randrange(len(b))),
    lambda b, r: (lambda i: b[:i] + b"\n" + b"    " * 120 + b"pass\n" + b[i:])(r.randrange(len(b))),
    lambda b, r: (lambda i: b[:i] + b"from . import x\n" + b[i:])(
        b.rfind(b"\n", 0, r.randrange(len(b))) + 1
    ),
    lambda b, r: (lambda i: b[:i] + b"import " + b".a" * 50 + b"\n" + b[i:])(
        b.rfind(b"\n", 0, r.randrange(len(b))) + 1
    ),
    lambda b, r: b"\xef\xbb\xbf# -*- coding: latin-1 -*-\n" + b,
    lambda b, r: b"# -*- coding: rot13 -*-\n" + b,
    lambda b, r: b.replace(b"    ", b"\t", r.randrange(1, 20)),
    lambda b, r: b.decode("utf-8", "replace").encode("utf-16"),
]


def _mutate(seed: int, which: int, rounds: int) -> bytes:
    r = random.Random(seed)
    data = SOURCES[seed % len(SOURCES)]
    for k in range(rounds):
        data = MUTATIONS[(which + k * 7) % len(MUTATIONS)](data, r) or b"\n"
    return data


@FAST
@given(
    seed=st.integers(0, 2**32),
    which=st.integers(0, len(MUTATIONS) - 1),
    rounds=st.integers(1, 3),
)
def test_mutated_real_modules(env: EnvInfo, seed: int, which: int, rounds: int) -> None:
    data = _mutate(seed, which, rounds)
    analyse({"t.py": data}, "t.py", env, runs=2)
    analyse_as_local(data, env)


@pytest.mark.slow
@LONG
@given(
    seed=st.integers(0, 2**32), which=st.integers(0, len(MUTATIONS) - 1), rounds=st.integers(1, 6)
)
def test_mutated_real_modules_long(env: EnvInfo, seed: int, which: int, rounds: int) -> None:
    data = _mutate(seed, which, rounds)
    analyse({"t.py": data}, "t.py", env)
    analyse_as_local(data, env)


# ------------------------------------------------------------------ generated valid programs

MODULES = ["json", "csv", "zlib", "tomllib", "wave", "colorsys", "shlex", "glob"]


@st.composite
def programs(draw: st.DrawFn) -> tuple[str, set[str], set[str]]:
    """A valid module with `main`: (source, modules main may need, modules it must need).

    Imports are bound at module level and used or not by `main`; some are guarded
    (try/except ImportError, `if TYPE_CHECKING:`, version checks) or imported inside nested
    functions/lambdas/comprehensions. `must` holds what an exact analysis has to report.
    """
    lines = ["import sys", "from typing import TYPE_CHECKING"]
    body: list[str] = []
    may: set[str] = {"sys", "typing"}
    must: set[str] = set()
    for i in range(draw(st.integers(1, 8))):
        mod = draw(st.sampled_from(MODULES))
        name = f"m{i}"
        kind = draw(st.sampled_from(["plain", "try", "checking", "version", "inner", "unused"]))
        used = draw(st.booleans())
        if kind == "plain":
            lines.append(f"import {mod} as {name}")
        elif kind == "try":
            lines += [
                "try:",
                f"    import {mod} as {name}",
                "except ImportError:",
                f"    {name} = None",
            ]
        elif kind == "checking":
            lines += ["if TYPE_CHECKING:", f"    import {mod} as {name}"]
            body.append(f"    _ = '{name}'")
            continue  # never needed at run time
        elif kind == "version":
            lines += [
                "if sys.version_info >= (3, 0):",
                f"    import {mod} as {name}",
                "else:",
                f"    {name} = None",
            ]
        elif kind == "inner":
            depth = draw(st.integers(1, 4))
            body.append(
                "    "
                + "".join(f"def f{i}_{k}():\n" + "    " * (k + 2) for k in range(depth))
                + f"import {mod}"
            )
            body.append("    " + f"f{i}_0()" if depth else "")
            may.add(mod)
            must.add(mod)
            continue
        else:  # unused by main: per-function analysis must leave it out
            lines.append(f"import {mod} as {name}")
            lines += [f"def other{i}():", f"    return {name}"]
            may.add(mod)
            continue
        if used:
            wrap = draw(st.sampled_from(["{}", "(lambda: {})()", "[{} for _ in (1,)][0]"]))
            body.append("    _ = " + wrap.format(name))
            must.add(mod)
        may.add(mod)
    src = "\n".join(lines) + "\n\n\ndef main():\n" + "\n".join([*body, "    return None"]) + "\n"
    return src, may, must


def _program_property(env: EnvInfo, prog: tuple[str, set[str], set[str]]) -> None:
    src, may, must = prog
    data = src.encode()
    first = analyse({"job.py": data}, "job.py:main", env, runs=2)  # cold, then warm
    assert isinstance(first, ReachResult), (first, src)
    got = {s.module for s in first.imports}
    assert must <= got <= may, (src, got)


@FAST
@given(prog=programs())
def test_generated_valid_programs_are_exact(
    env: EnvInfo, prog: tuple[str, set[str], set[str]]
) -> None:
    _program_property(env, prog)


@pytest.mark.slow
@LONG
@given(prog=programs())
def test_generated_valid_programs_long(env: EnvInfo, prog: tuple[str, set[str], set[str]]) -> None:
    _program_property(env, prog)


# ------------------------------------------------------------------ cyclic local imports


@settings(FAST, max_examples=25)
@given(
    n=st.integers(2, 50),
    extra=st.lists(st.tuples(st.integers(0, 49), st.integers(0, 49)), max_size=30),
)
def test_cyclic_rings_of_local_modules(env: EnvInfo, n: int, extra: list[tuple[int, int]]) -> None:
    """A ring m0 -> m1 -> ... -> m(n-1) -> m0 plus random chords: every module is reached."""
    edges = {(i, (i + 1) % n) for i in range(n)} | {(a % n, b % n) for a, b in extra}
    files: dict[str, bytes] = {}
    for i in range(n):
        outs = sorted(b for a, b in edges if a == i)
        imports = "".join(f"import m{b}\n" for b in outs)
        calls = " or ".join(f"m{b}.f{b}(k - 1)" for b in outs)
        files[f"m{i}.py"] = (
            f"{imports}import zlib\n\n\ndef f{i}(k):\n    return zlib if k < 0 else ({calls})\n"
        ).encode()
    out = analyse(files, "m0.py:f0", env)
    assert isinstance(out, ReachResult), out
    assert len(out.local_files) == n
    assert {s.module for s in out.imports} == {"zlib"}


# ------------------------------------------------------------------ the hand-made attack corpus

# name -> (source bytes, expected outcome as the child reports it: "ok" or an error regex)
CORPUS: dict[str, tuple[bytes, str]] = {
    "parens-5000": (
        b"x = " + b"(" * 5000 + b"1" + b")" * 5000 + b"\n",
        r":1: syntax error: too many nested parentheses",
    ),
    "calls-3000": (
        b"def f():\n    return " + b"g(" * 3000 + b")" * 3000 + b"\n",
        r"syntax error: too many nested parentheses",
    ),
    "ifs-500": (
        b"".join(b"    " * i + b"if x:\n" for i in range(500)) + b"    " * 500 + b"pass\n",
        r"too many levels of indentation",
    ),
    "attr-chain-100000": (
        b"import os\ndef f():\n    return os" + b".path" * 100_000 + b"\n",
        r"nested too deeply for Python to compile",
    ),
    "binop-100000": (
        b"def f():\n    return 1" + b"+1" * 100_000 + b"\n",
        r"nested too deeply for Python to compile",
    ),
    "not-50000": (
        b"def f():\n    return " + b"not " * 50_000 + b"x\n",
        r"nested too deeply for Python to compile",
    ),
    "lambda-1000": (
        b"f = " + b"lambda: " * 1000 + b"1\n",
        rf"nested more than {MAX_NESTING} levels",
    ),
    "elif-2000": (
        b"x = 1\ndef f():\n    if x: pass\n" + b"    elif x: pass\n" * 2000,
        rf"nested more than {MAX_NESTING} levels",
    ),
    "subscript-900": (b"def f():\n    return f" + b"[0]" * 900 + b"\n", "ok"),
    "lists-190": (
        b"import json\ndef f():\n    return json, " + b"[" * 190 + b"]" * 190 + b"\n",
        "ok",
    ),
    "decorators-3000": (b"import json\n" + b"@json.dumps\n" * 3000 + b"def f(): pass\n", "ok"),
    "huge-20MB": (
        b"import json\ndef f():\n    return json\n" + b"x = 1\n" * 3_500_000,
        r"20\.0 MiB is over lfm-pack's 2 MiB limit",
    ),
    "utf16-bom": (
        "import json\ndef f():\n    return json\n".encode("utf-16"),
        r"source is UTF-16-encoded",
    ),
    "utf32-bom": (
        "import json\ndef f():\n    return json\n".encode("utf-32"),
        r"source is UTF-32-encoded",
    ),
    "utf8-bom": (b"\xef\xbb\xbfimport json\ndef f():\n    return json\n", "ok"),
    "latin1-cookie": (
        "# -*- coding: latin-1 -*-\nimport json\ns = 'café'\ndef f():\n    return json\n".encode(
            "latin-1"
        ),
        "ok",
    ),
    "invalid-cookie": (
        b"# -*- coding: no-such-codec -*-\ndef f():\n    pass\n",
        r"cannot decode the source",
    ),
    "bom-and-latin1-cookie": (
        b"\xef\xbb\xbf# coding: latin-1\ndef f():\n    pass\n",
        r"cannot decode the source",
    ),
    "latin1-no-cookie": (b"s = 'caf\xe9'\ndef f():\n    pass\n", r"not valid utf-8|cannot decode"),
    "null-bytes": (b"def f():\n    return 1\x00\n", r"null byte"),
    "only-nulls": (b"\x00" * 1000, r"null byte"),
    "cr-only-newlines": (b"import json\rdef f():\r    return json\r", "ok"),
    "form-feeds": (b"import json\n\x0c\ndef f():\n\x0c    return json\n", "ok"),
    "nested-fstrings": (b"import json\ndef f():\n    return f'{json!r:{1}}'\n", "ok"),
    "walrus-and-match": (
        b"import json\ndef f(x):\n    match (y := x):\n        case {'a': 1}: return json\n",
        "ok",
    ),
}

_CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from lfm_pack.analyze.environment import probe
from lfm_pack.analyze.targets import parse_target
from lfm_pack.analyze.reach import reach
from lfm_pack.errors import LfmError
env = probe()
mode, srcdir, names = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
good = b"import helper\n\n\ndef main():\n    return helper.run()\n"
for name in names:
    print(json.dumps({"name": name, "started": True}), flush=True)
    data = (srcdir / name).read_bytes()
    d = Path(tempfile.mkdtemp())
    if mode == "target":
        (d / "t.py").write_bytes(data)
        raw = "t.py:f" if b"def f" in data else "t.py"
    else:
        (d / "job.py").write_bytes(good)
        (d / "helper.py").write_bytes(data)
        raw = "job.py:main"
    t0 = time.monotonic()
    try:
        r = reach([parse_target(raw, env, str(d))], env)
        out = {"ok": True, "findings": sorted({f.code for f in r.findings}),
               "files": len(r.local_files)}
    except LfmError as e:
        out = {"ok": False, "error": e.message, "code": e.exit_code}
    out.update(name=name, seconds=time.monotonic() - t0)
    print(json.dumps(out), flush=True)
"""


def _run_corpus(mode: str, tmp: Path) -> dict[str, dict[str, object]]:
    """Every corpus case in child processes; a case that kills its child is recorded as
    crashed and the remaining cases run in a fresh child."""
    for name, (data, _) in CORPUS.items():
        (tmp / name).write_bytes(data)
    results: dict[str, dict[str, object]] = {}
    todo = sorted(CORPUS)
    while todo:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, mode, str(tmp), *todo],
            capture_output=True, text=True, timeout=900, check=False,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp / "cache")},
        )  # fmt: skip
        started = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            if rec.get("started"):
                started = rec["name"]
            else:
                results[str(rec["name"])] = rec
                started = None
        if proc.returncode == 0 and started is None:
            break
        crashed = started or todo[0]
        results[crashed] = {"crashed": proc.returncode, "stderr": proc.stderr[-2000:]}
        todo = [n for n in todo if n not in results]
    return results


@pytest.fixture(scope="module")
def corpus_as_target(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    return _run_corpus("target", tmp_path_factory.mktemp("corpus-target"))


@pytest.fixture(scope="module")
def corpus_as_local(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    return _run_corpus("local", tmp_path_factory.mktemp("corpus-local"))


def _checked(results: dict[str, dict[str, object]], name: str) -> dict[str, object]:
    out = results[name]
    assert "crashed" not in out, f"{name} crashed the interpreter: {out}"
    assert float(str(out["seconds"])) < TIME_BOUND_S, out
    return out


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_attack_corpus_as_target(name: str, corpus_as_target: dict[str, dict[str, object]]) -> None:
    import re

    out = _checked(corpus_as_target, name)
    expected = CORPUS[name][1]
    if expected == "ok":
        assert out["ok"], out
    else:
        assert not out["ok"] and out["code"] == TargetError.exit_code, out
        assert re.search(expected, str(out["error"])), out


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_attack_corpus_as_local_module(
    name: str, corpus_as_local: dict[str, dict[str, object]]
) -> None:
    """A hostile local module never stops the analysis of a good target: it is a finding."""
    out = _checked(corpus_as_local, name)
    assert out["ok"], out
    assert out["files"] == 2, out
    if CORPUS[name][1] != "ok":
        findings = set(out["findings"])  # type: ignore[call-overload]
        assert findings & {"syntax-error-local", "unreadable-local"}, out


def test_limits_are_the_documented_ones() -> None:
    """docs/analyzer-limits.md states these numbers; keep code and doc in step."""
    doc = (Path(__file__).parent.parent / "docs" / "analyzer-limits.md").read_text()
    assert f"| {MAX_SOURCE_BYTES >> 20} MiB |" in doc
    assert f"| {MAX_NESTING:,} |" in doc


def test_newer_target_grammar_never_hands_hostile_nesting_to_libcst() -> None:
    """For a target newer than the host, a host SyntaxError may be new grammar, so libcst
    gets a chance - but never on nesting CPython refuses (that segfaulted libcst's parser)."""
    from lfm_pack.analyze.parse_guard import gate

    newer = (sys.version_info[0], sys.version_info[1] + 1, 0)
    assert gate("type X = int\n", newer) == (None, None)  # new grammar: libcst decides
    if sys.version_info < (3, 12):
        assert gate("type X = int\n", sys.version_info[:3])[0] is not None  # host decides
    deep = "type X = " + "(" * 5000 + "1" + ")" * 5000 + "\n"
    assert gate(deep, newer)[0] == (1, "too many nested parentheses")
    indented = "".join(" " * i + "if x:\n" for i in range(150)) + " " * 150 + "type X = int\n"
    assert gate(indented, newer)[0] is not None
