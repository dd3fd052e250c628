"""Import -> file -> owning distribution, over real venvs with hand-written dist-info."""

from __future__ import annotations

from pathlib import Path

import pytest
from envbuild import FakeDist, env_info, fake_env, site_packages
from pythons import find_python, needs_python

from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.mapping import map_imports, map_sites
from lfm_pack.analyze.modpath import clear_caches
from lfm_pack.models import EnvInfo, ImportSite, Location, ReachResult, ResolvedImport

EXT = ".cpython-311-x86_64-linux-gnu.so"
PY310 = find_python("3.10") or "python3.10"  # found at run time; tests needing it skip without it
PY312 = find_python("3.12") or "python3.12"

HARD_CASES = [
    FakeDist("PyYAML", "6.0.1", {"yaml/__init__.py": "", "_yaml/__init__.py": ""}),
    FakeDist(
        "scikit-learn", "1.5.1", {"sklearn/__init__.py": "", "sklearn/linear_model/__init__.py": ""}
    ),
    FakeDist(
        "pillow",
        "10.4.0",
        {"PIL/__init__.py": "", "PIL/Image.py": "", f"PIL/_imaging{EXT}": b"\x7fELF"},
    ),
    FakeDist(
        "opencv-python-headless", "4.10.0.84", {"cv2/__init__.py": "", f"cv2/cv2{EXT}": b"\x7fELF"}
    ),
    FakeDist("beautifulsoup4", "4.12.3", {"bs4/__init__.py": ""}),
    FakeDist("attrs", "23.2.0", {"attr/__init__.py": "", "attrs/__init__.py": ""}),
    FakeDist(
        "python-dateutil",
        "2.9.0.post0",
        {"dateutil/__init__.py": "", "dateutil/parser/__init__.py": ""},
    ),
    FakeDist(
        "setuptools",
        "71.0.0",
        {
            "pkg_resources/__init__.py": "",
            "setuptools/__init__.py": "",
            "_distutils_hack/__init__.py": "",
        },
    ),
    # PEP 420 namespace `google` shared by two distributions
    FakeDist(
        "protobuf", "4.25.3", {"google/protobuf/__init__.py": "", "google/protobuf/message.py": ""}
    ),
    FakeDist("googleapis-common-protos", "1.63.2", {"google/api/__init__.py": ""}),
    # namespace `mpl_toolkits` owned only by matplotlib
    FakeDist(
        "matplotlib",
        "3.9.1",
        {"matplotlib/__init__.py": "", "mpl_toolkits/mplot3d/__init__.py": ""},
    ),
    # extension-only module, no top_level.txt (packages_distributions() misses these)
    FakeDist("fastcrc", "0.3.0", {f"fastcrc{EXT}": b"\x7fELF"}),
    FakeDist("six", "1.16.0", {"six.py": ""}),
    FakeDist("six", "1.17.0", {"six.py": ""}, location="extra"),
]


def site(module: str, line: int = 1, optional: bool = False) -> ImportSite:
    return ImportSite(module=module, location=Location("/job.py", line), optional=optional)


@pytest.fixture(scope="module")
def hard_env(tmp_path_factory: pytest.TempPathFactory) -> EnvInfo:
    root = fake_env(tmp_path_factory.mktemp("hard"), HARD_CASES)
    (site_packages(root) / "handmade.py").write_text("")  # on the path, owned by nobody
    clear_caches()
    return env_info(root)


def resolve(env: EnvInfo, *sites: ImportSite) -> tuple[tuple[ResolvedImport, ...], tuple[str, ...]]:
    resolved, findings = map_sites(sites, env, load_index(env))
    return resolved, tuple(f.code for f in findings)


@pytest.mark.parametrize(
    ("module", "dist"),
    [
        ("yaml", "pyyaml"),
        ("sklearn.linear_model", "scikit-learn"),
        ("PIL.Image", "pillow"),
        ("PIL", "pillow"),
        ("PIL.NotAModuleButAnAttribute", "pillow"),
        ("cv2", "opencv-python-headless"),
        ("bs4", "beautifulsoup4"),
        ("attr", "attrs"),
        ("attrs", "attrs"),
        ("dateutil.parser", "python-dateutil"),
        ("pkg_resources", "setuptools"),
        ("google.protobuf", "protobuf"),
        ("google.protobuf.message", "protobuf"),
        ("google.api", "googleapis-common-protos"),
        ("mpl_toolkits.mplot3d", "matplotlib"),
        ("fastcrc", "fastcrc"),
        ("six", "six"),
    ],
)
def test_hard_cases_map_to_the_owner(hard_env: EnvInfo, module: str, dist: str) -> None:
    (r,), codes = resolve(hard_env, site(module))
    assert (r.kind, r.distribution) == ("third-party", dist)
    assert r.file is not None and Path(r.file).is_file()
    assert codes == ()


def test_same_dist_twice_resolves_to_first_copy(hard_env: EnvInfo) -> None:
    (r,), _ = resolve(hard_env, site("six"))
    assert r.file is not None and r.file.endswith("site-packages/six.py")
    index = load_index(hard_env)
    assert [f.code for f in index.findings] == ["duplicate-distribution"]


def test_namespace_alone_is_ambiguous(hard_env: EnvInfo) -> None:
    (r,), codes = resolve(hard_env, site("google"))
    assert (r.kind, r.distribution, r.file) == ("third-party", "googleapis-common-protos", None)
    assert codes == ("ambiguous-namespace",)


def test_builtin_and_stdlib(hard_env: EnvInfo) -> None:
    resolved, codes = resolve(
        hard_env,
        site("sys"),
        site("_thread"),
        site("json.decoder"),
        site("tomllib"),
        site("distutils.util"),
    )
    assert [r.kind for r in resolved] == ["builtin", "builtin", "stdlib", "stdlib", "stdlib"]
    assert resolved[2].file == f"{hard_env.stdlib_dir}/json/decoder.py"
    assert codes == ()


def test_missing_and_unowned(hard_env: EnvInfo) -> None:
    resolved, _ = resolve(
        hard_env,
        site("ujson", 3, optional=True),
        site("requests", 4),
        site("requests", 9),
        site("handmade", 5),
    )
    assert [r.kind for r in resolved] == ["unresolved"] * 4
    _, findings = map_sites(
        [
            site("ujson", 3, optional=True),
            site("requests", 4),
            site("requests", 9),
            site("handmade", 5),
        ],
        hard_env,
        load_index(hard_env),
    )
    assert [(f.code, f.severity, f.location) for f in findings] == [
        ("optional-missing", "info", Location("/job.py", 3)),
        ("missing-import", "error", Location("/job.py", 4)),  # one finding per module
        ("unowned-file", "warning", Location("/job.py", 5)),
    ]
    assert resolved[3].file == str(site_packages(Path(hard_env.prefix)) / "handmade.py")


def test_map_imports_takes_a_reach_result(hard_env: EnvInfo) -> None:
    reach = ReachResult(imports=(site("yaml"), site("bs4")), local_files=(), local_roots=())
    resolved, findings = map_imports(reach, hard_env, load_index(hard_env))
    assert [r.distribution for r in resolved] == ["pyyaml", "beautifulsoup4"]
    assert [r.site for r in resolved] == list(reach.imports)
    assert findings == ()


@needs_python("3.10")
def test_stdlib_by_target_version_310(tmp_path: Path) -> None:
    env = env_info(
        fake_env(tmp_path, [FakeDist("tomli", "2.0.1", {"tomli/__init__.py": ""})], python=PY310)
    )
    assert env.version[:2] == (3, 10)
    resolved, codes = resolve(env, site("tomllib"), site("tomli"), site("distutils"))
    assert [(r.kind, r.distribution) for r in resolved] == [
        ("unresolved", None),
        ("third-party", "tomli"),
        ("stdlib", None),
    ]
    assert codes == ("missing-import",)


@needs_python("3.12")
def test_distutils_gone_in_312(tmp_path: Path) -> None:
    bare = env_info(fake_env(tmp_path, [], name="bare", python=PY312))
    (r,), codes = resolve(bare, site("distutils.util"))
    assert (r.kind, codes) == ("unresolved", ("missing-import",))
    with_st = env_info(
        fake_env(
            tmp_path,
            [
                FakeDist(
                    "setuptools",
                    "71.0.0",
                    {"setuptools/__init__.py": "", "_distutils_hack/__init__.py": ""},
                )
            ],
            name="st",
            python=PY312,
        )
    )
    (r,), codes = resolve(
        with_st,
        site("distutils.util"),
    )
    assert (r.kind, r.distribution, codes) == ("third-party", "setuptools", ("distutils-removed",))


def test_editable_install_is_third_party_with_a_note(tmp_path: Path) -> None:
    src = tmp_path / "proj" / "src"
    (src / "mylib").mkdir(parents=True)
    (src / "mylib" / "__init__.py").write_text("")
    env = env_info(
        fake_env(
            tmp_path,
            [
                FakeDist(
                    "mylib",
                    "0.1",
                    {"__editable__.mylib-0.1.pth": f"{src}\n"},
                    direct_url={
                        "url": (tmp_path / "proj").as_uri(),
                        "dir_info": {"editable": True},
                    },
                )
            ],
        )
    )
    (r,), codes = resolve(env, site("mylib"))
    assert (r.kind, r.distribution, r.file) == (
        "third-party",
        "mylib",
        str(src / "mylib" / "__init__.py"),
    )
    assert codes == ("editable-install",)


REAL_WHEELS = [
    "pyyaml==6.0.1",
    "attrs==23.2.0",
    "python-dateutil==2.9.0.post0",
    "six==1.16.0",
    "beautifulsoup4==4.12.3",
    "soupsieve==2.5",
    "protobuf==4.25.3",
    "googleapis-common-protos==1.63.2",
    "setuptools==69.5.1",
]


def test_real_wheels_from_pypi() -> None:
    """Real RECORDs written by pip: renamed packages, extension modules, a PEP 420 namespace."""
    from envbuild import real_venv

    env = env_info(real_venv(REAL_WHEELS))
    index = load_index(env)
    modules = [
        "yaml",
        "yaml._yaml",
        "attr",
        "attrs",
        "dateutil.tz",
        "bs4",
        "google.protobuf",
        "google.protobuf.json_format",
        "google.api.http_pb2",
        "pkg_resources",
    ]
    resolved, findings = map_sites([site(m) for m in modules], env, index)
    assert [r.distribution for r in resolved] == [
        "pyyaml",
        "pyyaml",
        "attrs",
        "attrs",
        "python-dateutil",
        "beautifulsoup4",
        "protobuf",
        "protobuf",
        "googleapis-common-protos",
        "setuptools",
    ]
    assert resolved[1].file is not None and resolved[1].file.endswith(
        ".cpython-311-x86_64-linux-gnu.so"
    )
    assert findings == ()
    from lfm_pack.analyze.closure import compute_closure

    pkgs, more = compute_closure(resolved, env, index)
    assert [(p.name, p.version, p.direct, p.required_by) for p in pkgs] == [
        ("attrs", "23.2.0", True, ("<import>",)),
        ("beautifulsoup4", "4.12.3", True, ("<import>",)),
        ("googleapis-common-protos", "1.63.2", True, ("<import>",)),
        ("protobuf", "4.25.3", True, ("<import>", "googleapis-common-protos")),
        ("python-dateutil", "2.9.0.post0", True, ("<import>",)),
        ("PyYAML", "6.0.1", True, ("<import>",)),
        ("setuptools", "69.5.1", True, ("<import>",)),
        ("six", "1.16.0", False, ("python-dateutil",)),
        ("soupsieve", "2.5", False, ("beautifulsoup4",)),
    ]
    assert more == ()
