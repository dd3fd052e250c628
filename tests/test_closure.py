"""The pinned closure: Requires-Dist with target markers and extras, conda depends, why chains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from envbuild import FakeDist, env_info, fake_env
from pythons import find_python, needs_python

from lfm_pack.analyze.closure import _conda_version_ok, compute_closure, why
from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.mapping import map_sites
from lfm_pack.models import Analysis, EnvInfo, ImportSite, Location, Package, TargetSpec

PY310 = find_python("3.10") or "python3.10"  # found at run time; tests needing it skip without it

DISTS = [
    FakeDist(
        "pandas",
        "2.2.2",
        {"pandas/__init__.py": ""},
        requires=[
            'numpy>=1.23.2; python_version == "3.11"',
            'numpy>=1.22.4; python_version < "3.11"',
            "python-dateutil>=2.8.2",
            "tzdata>=2022.7",
            'tomli>=2; python_version < "3.11"',
            'pywin32; sys_platform == "win32"',
            'pyarrow>=10.0.1; extra == "parquet"',
        ],
    ),
    FakeDist("numpy", "1.26.4", {"numpy/__init__.py": ""}),
    FakeDist("python-dateutil", "2.9.0.post0", {"dateutil/__init__.py": ""}, requires=["six>=1.5"]),
    FakeDist("six", "1.16.0", {"six.py": ""}),
    FakeDist("tzdata", "2024.1", {"tzdata/__init__.py": ""}),
    FakeDist("tomli", "2.0.1", {"tomli/__init__.py": ""}),
    FakeDist(
        "requests",
        "2.32.3",
        {"requests/__init__.py": ""},
        requires=["urllib3<3,>=1.21.1", "idna<4,>=2.5", 'PySocks!=1.5.7,>=1.5.6; extra == "socks"'],
        extras=["socks"],
    ),
    FakeDist("urllib3", "2.2.2", {"urllib3/__init__.py": ""}),
    FakeDist("idna", "3.7", {"idna/__init__.py": ""}),
    FakeDist("PySocks", "1.7.1", {"socks.py": ""}),
    FakeDist(
        "httpie",
        "3.2.3",
        {"httpie/__init__.py": ""},
        requires=["requests[socks]>=2.22.0", "six>=2", "notinstalled>=1", "bad requirement !!"],
    ),
    FakeDist("ujson", "5.10.0", {"ujson.py": ""}, requires=["six"]),
]


def sites(*mods: str, optional: tuple[str, ...] = ()) -> list[ImportSite]:
    return [
        ImportSite(m, Location("/w/job.py", i + 1), optional=m in optional)
        for i, m in enumerate(mods)
    ]


@pytest.fixture(scope="module")
def env311(tmp_path_factory: pytest.TempPathFactory) -> EnvInfo:
    return env_info(fake_env(tmp_path_factory.mktemp("c311"), DISTS))


def closure(
    env: EnvInfo, *mods: str, optional: tuple[str, ...] = ()
) -> tuple[dict[str, Package], list[str]]:
    index = load_index(env)
    resolved, _ = map_sites(sites(*mods, optional=optional), env, index)
    pkgs, findings = compute_closure(resolved, env, index)
    assert [p.name for p in pkgs] == sorted((p.name for p in pkgs), key=str.lower)
    return {p.name: p for p in pkgs}, [f.code for f in findings]


def test_markers_for_the_target_311(env311: EnvInfo) -> None:
    pkgs, codes = closure(env311, "pandas")
    assert sorted(pkgs) == ["numpy", "pandas", "python-dateutil", "six", "tzdata"]
    assert codes == []
    assert pkgs["pandas"] == Package(
        "pandas", "2.2.2", "pip", True, ("<import>",), False, "pandas==2.2.2"
    )
    assert pkgs["numpy"].required_by == ("pandas",)
    assert pkgs["numpy"].requirement == 'numpy==1.26.4 ; python_version == "3.11"'
    assert pkgs["six"] == Package(
        "six", "1.16.0", "pip", False, ("python-dateutil",), False, "six==1.16.0"
    )


@needs_python("3.10")
def test_markers_for_the_target_310_not_the_host(tmp_path: Path) -> None:
    env = env_info(fake_env(tmp_path, DISTS, python=PY310))
    pkgs, codes = closure(env, "pandas")
    assert sorted(pkgs) == ["numpy", "pandas", "python-dateutil", "six", "tomli", "tzdata"]
    assert pkgs["tomli"].requirement == 'tomli==2.0.1 ; python_version < "3.11"'
    assert pkgs["numpy"].requirement == 'numpy==1.26.4 ; python_version < "3.11"'
    assert codes == []


def test_extras_only_when_the_edge_asks(env311: EnvInfo) -> None:
    index = load_index(env311)
    resolved, _ = map_sites(sites("requests"), env311, index)
    pkgs, _ = compute_closure(resolved, env311, index, installed_extras=False)
    assert sorted(p.name for p in pkgs) == ["idna", "requests", "urllib3"]
    via, codes = closure(env311, "httpie")
    assert sorted(via) == ["PySocks", "httpie", "idna", "requests", "six", "urllib3"]
    assert via["PySocks"].required_by == ("requests",)
    assert via["requests"].required_by == ("httpie",)
    assert codes == ["requirement-unsatisfied", "requirement-missing", "bad-requirement"]


def test_optional_only_through_guarded_imports(env311: EnvInfo) -> None:
    pkgs, _ = closure(env311, "ujson", optional=("ujson",))
    assert (pkgs["ujson"].optional, pkgs["six"].optional) == (True, True)
    pkgs, _ = closure(env311, "ujson", "dateutil", optional=("ujson",))
    assert (pkgs["ujson"].optional, pkgs["six"].optional) == (True, False)
    assert pkgs["six"].required_by == ("python-dateutil", "ujson")


def test_import_sites_both_optional_and_not_is_required(env311: EnvInfo) -> None:
    index = load_index(env311)
    both = [
        ImportSite("six", Location("/w/a.py", 1), optional=True),
        ImportSite("six", Location("/w/b.py", 2)),
    ]
    resolved, _ = map_sites(both, env311, index)
    (pkg,), _ = compute_closure(resolved, env311, index)
    assert (pkg.name, pkg.direct, pkg.optional) == ("six", True, False)


def _analysis(env: EnvInfo, mods: list[str]) -> Analysis:
    index = load_index(env)
    resolved, findings = map_sites(sites(*mods), env, index)
    pkgs, more = compute_closure(resolved, env, index)
    return Analysis(
        targets=(TargetSpec("job.py:f", "file", "/w/job.py", None, "f"),),
        env=env,
        imports=resolved,
        local_files=(),
        local_roots=(),
        unresolved=(),
        findings=(*findings, *more),
        packages=pkgs,
    )


def test_why_chains(env311: EnvInfo) -> None:
    a = _analysis(env311, ["pandas", "ujson"])
    assert why("six", a) == [
        ["/w/job.py:2 (import ujson)", "ujson", "six"],
        ["/w/job.py:1 (import pandas)", "pandas", "python-dateutil", "six"],
    ]
    assert why("Pandas", a) == [["/w/job.py:1 (import pandas)", "pandas"]]
    assert why("requests", a) == []


def test_why_starts_at_the_target_function(env311: EnvInfo) -> None:
    index = load_index(env311)
    site = ImportSite(
        "dateutil", Location("/w/helpers.py", 7), via=("job.py:main", "helpers.py:parse")
    )
    resolved, _ = map_sites([site], env311, index)
    pkgs, _ = compute_closure(resolved, env311, index)
    a = Analysis((), env311, resolved, (), (), (), (), pkgs)
    assert why("six", a) == [
        [
            "job.py:main",
            "helpers.py:parse",
            "/w/helpers.py:7 (import dateutil)",
            "python-dateutil",
            "six",
        ]
    ]


def _record(
    prefix: Path, name: str, version: str, build: str, depends: list[str], files: list[str]
) -> None:
    meta = prefix / "conda-meta"
    meta.mkdir(exist_ok=True)
    for f in files:
        (prefix / f).parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(prefix / f):  # never write through the venv's python symlink
            (prefix / f).write_text("")
    (meta / f"{name}-{version}-{build}.json").write_text(
        json.dumps(
            {
                "name": name,
                "version": version,
                "build": build,
                "build_number": 0,
                "channel": "conda-forge",
                "depends": depends,
                "files": files,
            }
        )
    )


def test_conda_depends_include_python_and_native_libs(tmp_path: Path) -> None:
    root = fake_env(tmp_path, [])
    sp = "lib/python3.11/site-packages"
    _record(
        root,
        "numpy",
        "1.26.4",
        "py311h64a7726_0",
        [
            "libblas >=3.9.0,<4.0a0",
            "libgfortran-ng",
            "libgcc-ng >=12",
            "python >=3.11,<3.12.0a0",
            "python_abi 3.11.* *_cp311",
            "__glibc >=2.17,<3.0.a0",
        ],
        [f"{sp}/numpy/__init__.py"],
    )
    _record(
        root,
        "libblas",
        "3.9.0",
        "22_linux64_openblas",
        ["libopenblas >=0.3.27,<1.0a0"],
        ["lib/libblas.so.3"],
    )
    _record(
        root,
        "libopenblas",
        "0.3.27",
        "pthreads_h413a1c8_0",
        ["libgfortran-ng", "libgcc-ng >=12"],
        ["lib/libopenblas.so.0"],
    )
    _record(
        root, "libgfortran-ng", "13.2.0", "h69a702a_7", ["libgcc-ng >=14"], ["lib/libgfortran.so.5"]
    )
    _record(root, "libgcc-ng", "13.2.0", "h77fa898_7", [], ["lib/libgcc_s.so.1"])
    _record(root, "python", "3.11.7", "hab00c5b_1_cpython", ["libgcc-ng >=12"], ["bin/python3.11"])
    _record(root, "python_abi", "3.11", "4_cp311", [], [])
    env = env_info(root)
    pkgs, codes = closure(env, "numpy")
    assert sorted(pkgs) == [
        "libblas",
        "libgcc-ng",
        "libgfortran-ng",
        "libopenblas",
        "numpy",
        "python",
        "python_abi",
    ]
    assert pkgs["numpy"].requirement == "conda-forge::numpy=1.26.4=py311h64a7726_0"
    assert (pkgs["numpy"].source, pkgs["numpy"].build) == ("conda", "py311h64a7726_0")
    assert pkgs["libgfortran-ng"].required_by == ("numpy", "libopenblas")
    assert pkgs["libgcc-ng"].required_by == (
        "numpy",
        "libgfortran-ng",
        "python",
        "libopenblas",
    )  # BFS order
    assert codes == ["requirement-unsatisfied"]  # libgfortran-ng wants libgcc-ng >=14


@pytest.mark.parametrize(
    ("installed", "spec", "ok"),
    [
        ("3.11.7", ">=3.11,<3.12.0a0", True),
        ("3.12.0", ">=3.11,<3.12.0a0", False),
        ("3.11", "3.11.*", True),
        ("3.11.7", "3.11.*", True),
        ("3.10.2", "3.11.*", False),
        ("1.26.4", "1.26", True),
        ("1.2.3", "1.2.3|1.2.4", True),
        ("1.2.5", "1.2.3|1.2.4", False),
        ("13.2.0", ">=12", True),
        ("2.0", "!=2.0", False),
        ("0.3.27", ">=0.3.27,<1.0a0", True),
    ],
)
def test_conda_version_specs(installed: str, spec: str, ok: bool) -> None:
    assert _conda_version_ok(installed, spec) is ok


WARM_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from envbuild import env_info
from pathlib import Path
from lfm_pack.analyze.closure import compute_closure
from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.mapping import map_sites
from lfm_pack.models import ImportSite, Location
env = env_info(Path(sys.argv[2]))
index = load_index(env)
resolved, _ = map_sites([ImportSite("pandas", Location("/w/job.py", 1))], env, index)
pkgs, findings = compute_closure(resolved, env, index)
print(json.dumps({"pkgs": [[p.name, p.version, list(p.required_by), p.requirement] for p in pkgs],
                  "packaging": sorted(m for m in sys.modules if m.startswith("packaging")),
                  "email": "email.parser" in sys.modules}))
"""


def test_warm_closure_comes_from_the_cache_without_packaging(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = fake_env(tmp_path, DISTS)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    tests_dir = str(Path(__file__).parent)

    def run() -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-c", WARM_SCRIPT, tests_dir, str(root)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        return dict(json.loads(out))

    cold, warm = run(), run()
    assert cold["pkgs"] == warm["pkgs"]
    assert [p[0] for p in cold["pkgs"]] == ["numpy", "pandas", "python-dateutil", "six", "tzdata"]  # type: ignore[union-attr]
    assert "packaging.requirements" in cold["packaging"]  # type: ignore[operator]
    assert warm["packaging"] == []  # neither packaging nor email are imported on a warm run
    assert (cold["email"], warm["email"]) == (False, False)
    # an upgrade invalidates: six 1.16.0 -> 1.17.0 changes the pin
    site = next((root / "lib").glob("python3.*/site-packages"))
    info = site / "six-1.16.0.dist-info"
    meta = (info / "METADATA").read_text().replace("Version: 1.16.0", "Version: 1.17.0")
    info.rename(site / "six-1.17.0.dist-info")
    (site / "six-1.17.0.dist-info" / "METADATA").write_text(meta)
    after = run()
    assert ["six", "1.17.0", ["python-dateutil"], "six==1.17.0"] in after["pkgs"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("channel", "name"),
    [
        ("https://conda.anaconda.org/conda-forge/linux-64", "conda-forge"),
        ("https://conda.anaconda.org/conda-forge", "conda-forge"),
        ("conda-forge", "conda-forge"),
        ("https://repo.anaconda.com/pkgs/main/linux-64", "pkgs/main"),
        ("https://repo.anaconda.com/pkgs/main/noarch/", "pkgs/main"),
        ("file:///opt/channel/linux-64", "file:///opt/channel"),
        ("<unknown>", None),
        (None, None),
    ],
)
def test_channel_name(channel: str | None, name: str | None) -> None:
    from lfm_pack.analyze.closure import channel_name

    assert channel_name(channel) == name


def test_a_fully_installed_extra_of_an_imported_dist_ships_as_optional(env311: EnvInfo) -> None:
    """requests[socks] is installed (PySocks): requests may import it lazily, so it ships,
    marked optional and attributed to the extra; extras of requirements are not followed."""
    direct, codes = closure(env311, "requests")
    assert sorted(direct) == ["PySocks", "idna", "requests", "urllib3"]
    assert direct["PySocks"].optional is True
    assert direct["PySocks"].required_by == ("requests[socks]",)
    assert direct["idna"].optional is False
    assert "extra-included" in codes
