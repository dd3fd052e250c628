"""requirements.txt and environment.yml renderings, checked by pip's parser and a YAML loader."""

from __future__ import annotations

import pytest
import yaml
from envbuild import FakeDist, env_info, fake_env
from packaging.requirements import Requirement

from lfm_pack.analyze.closure import compute_closure
from lfm_pack.analyze.distributions import load_index
from lfm_pack.analyze.formats import to_conda_env, to_requirements
from lfm_pack.analyze.mapping import map_sites
from lfm_pack.models import Analysis, EnvInfo, ImportSite, Location, Package, TargetSpec

TARGET = (TargetSpec("job.py:simulate", "file", "/w/job.py", None, "simulate"),)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> EnvInfo:
    dists = [
        FakeDist(
            "pandas",
            "2.2.2",
            {"pandas/__init__.py": ""},
            requires=['numpy>=1.22.4; python_version < "3.12"', "six"],
        ),
        FakeDist("numpy", "1.26.4", {"numpy/__init__.py": ""}),
        FakeDist("six", "1.16.0", {"six.py": ""}),
        FakeDist("ujson", "5.10.0", {"ujson.py": ""}),
        FakeDist(
            "mylib",
            "0.1",
            {"mylib/__init__.py": ""},
            direct_url={
                "url": "git+https://example.org/mylib.git@abc123",
                "vcs_info": {"vcs": "git", "commit_id": "abc123"},
            },
        ),
    ]
    return env_info(fake_env(tmp_path_factory.mktemp("fmt"), dists))


def analysis(env: EnvInfo, packages: tuple[Package, ...] | None = None) -> Analysis:
    index = load_index(env)
    sites = [
        ImportSite("pandas", Location("/w/job.py", 1)),
        ImportSite("ujson", Location("/w/job.py", 2), optional=True),
        ImportSite("mylib", Location("/w/job.py", 3)),
    ]
    resolved, _ = map_sites(sites, env, index)
    pkgs, _ = compute_closure(resolved, env, index)
    return Analysis(
        TARGET, env, resolved, (), (), (), (), packages if packages is not None else pkgs
    )


def test_requirements(env: EnvInfo) -> None:
    text = to_requirements(analysis(env))
    body = [
        line
        for line in text.splitlines()
        if not line.startswith("# generated") and not line.startswith("# pinned")
    ]
    assert body == [
        "mylib @ git+https://example.org/mylib.git@abc123",
        'numpy==1.26.4 ; python_version < "3.12"',
        "pandas==2.2.2",
        "six==1.16.0",
        "# optional (guarded import): ujson==5.10.0",
    ]
    for line in body[:4]:
        Requirement(line)  # each line is a valid PEP 508 requirement


def test_conda_env_pip_only(env: EnvInfo) -> None:
    text = to_conda_env(analysis(env))
    data = yaml.safe_load(text)
    assert data == {
        "name": "simulate",
        "dependencies": [
            f"python={env.version_str}",
            "pip",
            {
                "pip": [
                    "mylib @ git+https://example.org/mylib.git@abc123",
                    'numpy==1.26.4 ; python_version < "3.12"',
                    "pandas==2.2.2",
                    "six==1.16.0",
                ]
            },
        ],
    }
    assert "# - ujson==5.10.0  # optional (guarded import)" in text


def test_conda_env_with_conda_packages(env: EnvInfo) -> None:
    pkgs = (
        Package(
            "numpy",
            "1.26.4",
            "conda",
            True,
            ("<import>",),
            requirement="numpy=1.26.4=py311h64a7726_0",
            build="py311h64a7726_0",
        ),
        Package("libopenblas", "0.3.27", "conda", False, ("numpy",), build="pthreads_h413a1c8_0"),
        Package("python", "3.11.7", "conda", False, ("numpy",), build="hab00c5b_1_cpython"),
        Package("tqdm", "4.66.4", "pip", True, ("<import>",), requirement="tqdm==4.66.4"),
        Package("ujson", "5.10.0", "conda", True, ("<import>",), optional=True, build="py311_0"),
    )
    text = to_conda_env(analysis(env, pkgs))
    assert yaml.safe_load(text)["dependencies"] == [
        "libopenblas=0.3.27=pthreads_h413a1c8_0",
        "numpy=1.26.4=py311h64a7726_0",
        "python=3.11.7=hab00c5b_1_cpython",
        "pip",
        {"pip": ["tqdm==4.66.4"]},
    ]
    assert "  # - ujson=5.10.0=py311_0  # optional (guarded import)" in text
    req = to_requirements(analysis(env, pkgs))
    assert req.splitlines()[2:] == [
        "tqdm==4.66.4",
        "# conda packages (not pip-installable as pinned; use --format conda-env):",
        "#   libopenblas=0.3.27=pthreads_h413a1c8_0",
        "#   numpy=1.26.4=py311h64a7726_0",
        "#   python=3.11.7=hab00c5b_1_cpython",
        "#   ujson=5.10.0=py311_0  (optional)",
    ]


def test_yaml_quoting_survives_odd_characters(env: EnvInfo) -> None:
    odd = Package(
        "weird", "1.0", "pip", True, ("<import>",), requirement="weird @ file:///tmp/it's #1: here"
    )
    data = yaml.safe_load(to_conda_env(analysis(env, (odd,))))
    assert data["dependencies"][-1] == {"pip": ["weird @ file:///tmp/it's #1: here"]}


def test_conda_env_channels_come_from_the_specs(env: EnvInfo) -> None:
    pkgs = (
        Package(
            "numpy",
            "1.26.4",
            "conda",
            True,
            ("<import>",),
            requirement="conda-forge::numpy=1.26.4=py311h64a7726_0",
            build="py311h64a7726_0",
        ),
        Package(
            "mkl",
            "2023.1.0",
            "conda",
            False,
            ("numpy",),
            requirement="pkgs/main::mkl=2023.1.0=h213fc3f_46344",
            build="h213fc3f_46344",
        ),
        Package(
            "libzlib",
            "1.3.1",
            "conda",
            False,
            ("numpy",),
            requirement="conda-forge::libzlib=1.3.1=h4ab18f5_1",
            build="h4ab18f5_1",
        ),
    )
    data = yaml.safe_load(to_conda_env(analysis(env, pkgs)))
    assert data["channels"] == ["conda-forge", "pkgs/main"]
    assert data["dependencies"] == [
        f"python={env.version_str}",
        "conda-forge::libzlib=1.3.1=h4ab18f5_1",
        "pkgs/main::mkl=2023.1.0=h213fc3f_46344",
        "conda-forge::numpy=1.26.4=py311h64a7726_0",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "conda-forge::numpy=1.26.4=py311h64a7726_0",
        "pkgs/main::mkl=2023.1.0=h213fc3f_46344",
        "https://example.org/chan::pkg=1=b",
        "name:",
        "x: y",
        "::a",
        "a #b",
        "-e file:///src",
        'numpy==1.26.4 ; python_version < "3.12"',
        "it's",
    ],
)
def test_every_yaml_scalar_round_trips(text: str) -> None:
    from lfm_pack.analyze.formats import _yaml_str

    assert yaml.safe_load(f"- {_yaml_str(text)}") == [text]
