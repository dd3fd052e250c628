"""Per-function reachability over sample projects (tests/fixtures/reach/<case>/expected.json).

Each case is a small project on disk plus the exact expected result: the set of non-local
imports (with optional/dynamic/hint flags), local files, placeholders and finding codes. Every
case runs twice with an empty cache directory: cold (libcst parses) and warm (summaries come
from the on-disk cache); both must give the identical result.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from envbuild import FakeDist, env_info, fake_env

from lfm_pack.analyze import reach_cache
from lfm_pack.analyze.reach import reach, target_root, uses_relative_imports, with_guard_env
from lfm_pack.analyze.reach_metadata import lookup_distribution
from lfm_pack.analyze.targets import parse_target
from lfm_pack.models import EnvInfo, ReachResult

FIXTURES = Path(__file__).parent / "fixtures" / "reach"
CASES = sorted(p for p in FIXTURES.iterdir() if (p / "expected.json").is_file())


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> EnvInfo:
    """A bare venv: what the expected files say must not depend on what the test venv holds
    (installing matplotlib for the plot tests brought pillow, and `from PIL import Image`
    then resolves one level deeper)."""
    # click is installed so that a local click.py shadows it (shadow_thirdparty)
    click = FakeDist("click", "8.1.7", {"click/__init__.py": ""})
    return env_info(fake_env(tmp_path_factory.mktemp("bare"), [click]))


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lfm-pack" / "reach"


def _env_for(env: EnvInfo, exp: dict[str, Any], case: Path) -> EnvInfo:
    extra = tuple(str(case / d) for d in exp.get("site_packages", ()))
    if extra:  # a hand-made site-packages inside the case (third-party, not local code)
        env = dataclasses.replace(
            env, sys_path=(*env.sys_path, *extra), site_packages=(*env.site_packages, *extra)
        )
    over = exp.get("env")
    if not over:
        return env
    version = tuple(over.get("version", env.version))
    markers = {k: v for k, v in over.items() if k != "version"}
    return with_guard_env(env, (version[0], version[1], version[2]), **markers)


def _run(case: Path, env: EnvInfo, exp: dict[str, Any]) -> ReachResult:
    raws = exp.get("targets") or [exp["target"]]
    specs = [parse_target(raw, env, str(case)) for raw in raws]
    return reach(specs, env)


def _rel(case: Path, path: str) -> str:
    return os.path.relpath(path, case)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reach_case(case: Path, env: EnvInfo, cache: Path) -> None:
    exp = json.loads((case / "expected.json").read_text())
    e = _env_for(env, exp, case)
    result = _run(case, e, exp)

    got_imports = {(s.module, s.optional, s.dynamic, s.hint is not None) for s in result.imports}
    want_imports = {
        (i["module"], i.get("optional", False), i.get("dynamic", False), i.get("hint", False))
        for i in exp["imports"]
    }
    assert got_imports == want_imports
    for item in exp["imports"]:
        if "via" in item:
            vias = {s.via for s in result.imports if s.module == item["module"]}
            assert tuple(item["via"]) in vias, vias

    assert {_rel(case, f) for f in result.local_files} == set(exp["local_files"])
    assert all(os.path.isabs(f) for f in result.local_files)
    if "local_roots" in exp:
        assert [os.path.normpath(_rel(case, r)) for r in result.local_roots] == exp["local_roots"]

    got_ph = {(_rel(case, p.path), p.line, p.module) for p in result.placeholders}
    assert got_ph == {tuple(p) for p in exp["placeholders"]}

    assert {f.code for f in result.findings} == set(exp["findings"])
    for code, lines in exp.get("finding_lines", {}).items():
        got_lines = sorted(
            f.location.line for f in result.findings if f.code == code and f.location
        )
        assert got_lines == lines

    # Warm: every summary now comes from the cache and the result is identical.
    assert any(cache.rglob("*.json"))
    assert _run(case, e, exp) == result


def test_import_site_evidence(env: EnvInfo, cache: Path) -> None:
    """Location is the import statement's file:line; via is the call chain from the target."""
    case = FIXTURES / "call_chain"
    result = reach([parse_target("job.py:main", env, str(case))], env)
    (site,) = result.imports
    assert site.module == "PIL"
    assert site.location.path == str(case / "helpers.py")
    assert site.location.line == 2
    assert site.via == ("job.py:main", "helpers.py:load_image", "helpers.py:_open")


def test_union_of_targets_keeps_each_evidence(env: EnvInfo, cache: Path) -> None:
    case = FIXTURES / "module_level_used"
    specs = [parse_target(t, env, str(case)) for t in ("job.py:target", "job.py:uncalled")]
    result = reach(specs, env)
    by_module = {s.module: s for s in result.imports}
    assert set(by_module) == {"yaml", "json", "requests"}
    assert by_module["requests"].via == ("job.py:uncalled",)
    assert by_module["yaml"].via == ("job.py:target",)
    assert result.placeholders == ()


def test_corrupt_cache_entries_are_ignored(env: EnvInfo, cache: Path) -> None:
    case = FIXTURES / "call_chain"
    spec = parse_target("job.py:main", env, str(case))
    first = reach([spec], env)
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 2
    for entry in entries:
        entry.write_text('{"v": 1, "units": [[')
    assert reach([spec], env) == first
    # ... and rebuilt: the entries parse again.
    for entry in cache.rglob("*.json"):
        json.loads(entry.read_text())


def test_cache_key_depends_on_source_and_guard_env(env: EnvInfo) -> None:
    genv = reach_cache.GuardEnv.from_markers((3, 11, 0), {"sys_platform": "linux"})
    other = reach_cache.GuardEnv.from_markers((3, 12, 0), {"sys_platform": "linux"})
    assert reach_cache.cache_key(b"x", genv) != reach_cache.cache_key(b"y", genv)
    assert reach_cache.cache_key(b"x", genv) != reach_cache.cache_key(b"x", other)
    assert reach_cache.cache_key(b"x", genv) == reach_cache.cache_key(b"x", genv)


def test_never_imports_the_analysed_code(env: EnvInfo, cache: Path) -> None:
    """module_target/tools/convert.py raises SystemExit when imported: analysis must not."""
    case = FIXTURES / "module_target"
    spec = parse_target("tools.convert:to_yaml", env, str(case))
    assert spec.kind == "module" and spec.path == str(case / "tools" / "convert.py")
    assert reach([spec], env).local_files


def test_warm_run_is_fast(env: EnvInfo, cache: Path, tmp_path: Path) -> None:
    """A realistic ~1,000-line module: the warm analysis must stay far below 0.5 s."""
    import click.core

    src = Path(click.core.__file__).read_text()
    job = tmp_path / "proj" / "job.py"
    job.parent.mkdir()
    job.write_text(src)
    spec = parse_target("job.py:Command.main", env, str(job.parent))
    t0 = time.perf_counter()
    cold = reach([spec], env)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = reach([spec], env)
    warm_s = time.perf_counter() - t0
    assert warm == cold
    assert warm_s < 0.25, (cold_s, warm_s)
    assert warm_s < cold_s


# ------------------------------------------------------------------ guard evaluation


def _guard(expr: str, version: tuple[int, int, int] = (3, 11, 4), **markers: str) -> bool | None:
    import libcst as cst

    from lfm_pack.analyze.reach_guards import evaluate
    from lfm_pack.analyze.reach_summary import GuardEnv

    genv = GuardEnv.from_markers(version, {"sys_platform": "linux", "os_name": "posix", **markers})
    return evaluate(cst.parse_expression(expr), genv)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("sys.version_info >= (3, 11)", True),
        ("sys.version_info < (3, 11)", False),
        ("sys.version_info >= (3, 11, 5)", False),
        ("sys.version_info[:2] == (3, 11)", True),
        ("sys.version_info[0] == 3", True),
        ("sys.version_info[1] >= 12", False),
        ("sys.version_info.minor < 10", False),
        ("version_info >= (3,)", True),
        ("(3, 8) <= sys.version_info < (3, 12)", True),
        ("sys.platform == 'linux'", True),
        ("sys.platform != 'win32'", True),
        ("sys.platform.startswith('win')", False),
        ("sys.platform.startswith(('linux', 'darwin'))", True),
        ("sys.platform in ('win32', 'cygwin')", False),
        ("os.name == 'nt'", False),
        ("platform.system() == 'Linux'", True),
        ("TYPE_CHECKING", False),
        ("typing.TYPE_CHECKING", False),
        ("not TYPE_CHECKING", True),
        ("TYPE_CHECKING or sys.version_info < (3, 8)", False),
        ("sys.platform == 'win32' and unknown()", False),
        ("sys.platform == 'linux' or unknown()", True),
        ("sys.platform == 'linux' and unknown()", None),
        ("x == 1", None),
        ("flag", None),
        ("name == 'nt'", None),
    ],
)
def test_guard_evaluation(expr: str, expected: bool | None) -> None:
    assert _guard(expr) is expected


def test_guard_uses_the_target_not_the_host() -> None:
    assert _guard("sys.platform == 'win32'", sys_platform="win32") is True
    assert _guard("os.name == 'nt'", os_name="nt") is True
    assert _guard("sys.version_info >= (3, 12)", version=(3, 13, 0)) is True


@pytest.mark.parametrize(
    ("src", "module"),
    [
        ("import pandas as pd\ndef f():\n    return pd.read_parquet('x')\n", "pyarrow"),
        ("from pandas import read_excel\ndef f():\n    return read_excel('x')\n", "openpyxl"),
        ("def f(df):\n    return df.to_hdf('x', 'k')\n", "tables"),
        (
            "import sqlalchemy as sa\ndef f():\n    return sa.create_engine('mysql+pymysql://h')\n",
            "pymysql",
        ),
        (
            "from sqlalchemy import create_engine\ndef f():\n    return create_engine('postgresql://h')\n",
            "psycopg2",
        ),
        ("import fsspec\ndef f():\n    return fsspec.filesystem('gcs')\n", "gcsfs"),
        ("import pandas as pd\ndef f():\n    return pd.read_csv('s3://b/k.csv')\n", "s3fs"),
        ("import matplotlib\ndef f():\n    matplotlib.use('TkAgg')\n", "tkinter"),
    ],
)
def test_backend_hint_table(src: str, module: str) -> None:
    from lfm_pack.analyze.reach_summary import GuardEnv
    from lfm_pack.analyze.reach_units import summarize

    summary = summarize(src, GuardEnv.from_markers((3, 11, 0), {}))
    hints = [h for u in summary.units for h in u.hints]
    assert [h.module for h in hints] == [module]
    assert all(h.hint for h in hints)


def test_venv_inside_the_project_is_not_local(env: EnvInfo, cache: Path, tmp_path: Path) -> None:
    """A project dir holding its own .venv: packages there are third-party, not local code."""
    import dataclasses

    proj = tmp_path / "proj"
    site = proj / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "fakepkg").mkdir(parents=True)
    (site / "fakepkg" / "__init__.py").write_text("import json\n")
    (proj / "helper.py").write_text("def h():\n    return 1\n")
    (proj / "job.py").write_text(
        "import fakepkg\nimport helper\n\ndef main():\n    return fakepkg, helper.h()\n"
    )
    venv_env = dataclasses.replace(
        env,
        sys_path=(*env.sys_path, str(site)),
        site_packages=(str(site),),
    )
    result = reach([parse_target("job.py:main", venv_env, str(proj))], venv_env)
    assert {s.module for s in result.imports} == {"fakepkg"}
    assert set(result.local_files) == {str(proj / "job.py"), str(proj / "helper.py")}
    assert result.local_roots == (str(proj),)


# ------------------------------------------------------------------ how the target is imported


def _python_imports(
    roots: tuple[str, ...], module: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Import `module` in a real, isolated interpreter with exactly `roots` first on sys.path
    (what the runner does with the shipped app dirs) and call its main()."""
    code = (
        "import importlib, sys; sys.path[:0] = sys.argv[1:]; "
        f"m = importlib.import_module({module!r}); print(m.__name__, m.main())"
    )
    return subprocess.run(
        [sys.executable, "-I", "-c", code, *roots],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_script_style_sibling_import_follows_python(env: EnvInfo, cache: Path) -> None:
    """`python pkg/job.py` puts pkg/ first on sys.path: `import helpers` is a sibling, and the
    package's __init__ never runs. The analysis and a real interpreter must agree."""
    case = FIXTURES / "script_siblings"
    job = case / "pkg" / "job.py"
    assert target_root(str(job)) == (str(case / "pkg"), "job", False)
    ran = subprocess.run(
        [sys.executable, "-E", "-s", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    result = reach([parse_target("pkg/job.py:main", env, str(case))], env)
    assert result.local_roots == (str(case / "pkg"),)
    imported = _python_imports(result.local_roots, "job", case)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split()[0] == "job"


def test_relative_imports_make_the_target_a_package_module(env: EnvInfo, cache: Path) -> None:
    """A file with relative imports fails as a script; it is `pkg.job` from the package root,
    and with the reported roots on sys.path (script dir first) a real import succeeds."""
    case = FIXTURES / "package_siblings"
    job = case / "pkg" / "job.py"
    assert uses_relative_imports(str(job))
    assert target_root(str(job)) == (str(case), "pkg.job", False)
    assert target_root(str(job), relative=False) == (str(case / "pkg"), "job", False)
    as_script = subprocess.run(
        [sys.executable, "-E", "-s", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "relative import" in as_script.stderr
    result = reach([parse_target("pkg/job.py:main", env, str(case))], env)
    assert result.local_roots == (str(case / "pkg"), str(case))
    imported = _python_imports(result.local_roots, "pkg.job", case)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split()[0] == "pkg.job"


def test_relative_detection_ignores_strings_and_comments(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text('# from . import x\nS = "from . import y"\nfrom os import path\n')
    assert not uses_relative_imports(str(src))
    src.write_text("import importlib\nm = importlib.import_module('.x', __package__)\n")
    assert uses_relative_imports(str(src))
    src.write_text("if True:\n    from ...a import b\n")
    assert uses_relative_imports(str(src))
    src.write_bytes(b"\xff\xfe not python")
    assert not uses_relative_imports(str(src))


# ------------------------------------------------------------------ hard case 18: metadata lookups


def test_metadata_lookups_name_the_distribution(env: EnvInfo, cache: Path) -> None:
    """Reached `importlib.metadata.version("x")` & co. need x's dist-info: one finding per
    call naming x (a requirement string gives its name); a non-literal name is a finding
    without a name; an unreached function's lookup is not reported."""
    case = FIXTURES / "metadata_lookup"
    result = reach([parse_target("job.py:main", env, str(case))], env)
    lookups = [f for f in result.findings if f.code == "metadata-lookup"]
    assert all(f.severity == "warning" for f in lookups)
    names = [lookup_distribution(f.message) for f in lookups]
    assert sorted(n for n in names if n) == ["PyYAML", "numpy", "requests", "scipy", "setuptools"]
    assert names.count(None) == 1
    assert "torch" not in " ".join(f.message for f in result.findings)


@pytest.mark.parametrize(
    ("src", "name"),
    [
        ("import importlib_metadata\nimportlib_metadata.version('attrs')\n", "attrs"),
        ("from importlib import metadata\nmetadata.files('attrs')\n", "attrs"),
        ("from importlib.metadata import requires\nrequires('attrs')\n", "attrs"),
        (
            "import pkg_resources\npkg_resources.require('attrs[extra]>=1; python_version>\"3\"')\n",
            "attrs",
        ),
        (
            "from pkg_resources import get_distribution as g\ng(dist='zope.interface')\n",
            "zope.interface",
        ),
        ("import importlib.metadata as m\nm.version(f'{x}')\n", None),
        ("def version(x):\n    return x\nversion('not-a-lookup')\n", "<none>"),
    ],
)
def test_metadata_lookup_forms(src: str, name: str | None) -> None:
    from lfm_pack.analyze.reach_summary import GuardEnv
    from lfm_pack.analyze.reach_units import summarize

    summary = summarize(src, GuardEnv.from_markers((3, 11, 0), {}))
    found = [f for u in summary.units for f in u.findings if f.code == "metadata-lookup"]
    if name == "<none>":
        assert found == []
        return
    assert len(found) == 1
    assert lookup_distribution(found[0].message) == name
