"""Frozen data that flows between the pipeline stages.

target -> reach -> imports -> closure -> selection -> archive -> launcher -> report.
Nothing here does I/O; every collection is a tuple or frozenset so values are hashable and can
be cached, compared in tests and serialized (see `lfm_pack.lock`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lfm_pack.launch.runtime.lfm_runtime import SCHEMA_MANIFEST as SCHEMA_MANIFEST
from lfm_pack.launch.runtime.lfm_runtime import SCHEMA_REPORT as SCHEMA_REPORT

SCHEMA_ANALYSIS = "lfm-pack.analysis/1"
_PEP503_RUN = re.compile(r"[-_.]+")
# the manifest and report schemas belong to the node runtime, which writes and reads them


def normalize_name(name: str) -> str:
    """PEP 503 project name (`Foo_Bar.baz` -> `foo-bar-baz`): the one normalizer in lfm-pack.

    `packaging.utils.canonicalize_name` does the same; this one keeps a warm analysis from
    importing `packaging` at all (tests/test_closure.py holds that).
    """
    return _PEP503_RUN.sub("-", name).lower()


EnvKind = Literal["conda", "venv", "system"]
Source = Literal["pip", "conda"]
ImportKind = Literal["stdlib", "builtin", "local", "third-party", "unresolved"]
Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Location:
    """A place in a source file (absolute path, 1-based line)."""

    path: str
    line: int
    column: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Finding:
    """Something the user should know that does not stop the run.

    `code` is stable (e.g. "dynamic-import", "optional-missing", "shadowed-stdlib",
    "owner-conflict", "marker-unsatisfied"); tests and tools key on it, people read `message`.
    """

    code: str
    message: str
    location: Location | None = None
    severity: Severity = "warning"


@dataclass(frozen=True)
class TargetSpec:
    """One parsed user target.

    `raw` is what the user typed: `path/file.py:func`, `path/file.py:Class.method`,
    `path/file.py`, `pkg.module:func` or `pkg.module`.
    """

    raw: str
    kind: Literal["file", "module"]
    path: str  # absolute path of the source file (a module target is located on the env's path)
    module: str | None  # dotted name for module targets; None for file targets
    qualname: str | None  # "func" or "Class.method"; None = the whole script/module


@dataclass(frozen=True)
class ImportSite:
    """A reached import of a non-local module, with the evidence that it is needed."""

    module: str  # dotted module as imported, e.g. "PIL.Image", "yaml"
    location: Location
    via: tuple[str, ...] = ()  # call chain from the target, e.g. ("job.py:main", "helpers.py:load")
    optional: bool = False  # guarded by try/except ImportError (or ModuleNotFoundError)
    dynamic: bool = False  # importlib.import_module("x") / __import__("x") with a literal
    hint: str | None = None  # set when the import comes from the curated backend-hint table


@dataclass(frozen=True)
class Placeholder:
    """A module-level import in a shipped local file that the target never reaches.

    The pack replaces the statement (lines `line`..`end_line`) by placeholders bound to
    `names` that raise only when used, so the pack can omit `module` (see docs/design.md).
    """

    path: str
    line: int
    end_line: int
    module: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ReachResult:
    """What the per-function reachability pass found, before any mapping to distributions."""

    imports: tuple[ImportSite, ...]
    local_files: tuple[str, ...]  # absolute paths of local source files to ship
    local_roots: tuple[str, ...]  # the sys.path-like roots those files are importable from
    placeholders: tuple[Placeholder, ...] = ()
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class EnvInfo:
    """The target interpreter, probed once in a subprocess (never imported into lfm-pack)."""

    executable: str  # sys.executable of the target
    base_executable: str  # the real interpreter binary (venvs point at their base)
    prefix: str  # sys.prefix
    base_prefix: str  # sys.base_prefix
    kind: EnvKind
    version: tuple[int, int, int]
    implementation: str  # "cpython"
    markers: tuple[tuple[str, str], ...]  # PEP 508 marker environment of the target
    sys_path: tuple[str, ...]  # the target's sys.path (isolated mode: no cwd, no PYTHONPATH)
    stdlib_modules: frozenset[str]  # sys.stdlib_module_names (or a computed equivalent)
    builtin_modules: frozenset[str]  # sys.builtin_module_names
    stdlib_dir: str  # sysconfig "stdlib"
    platstdlib_dir: str  # sysconfig "platstdlib"
    site_packages: tuple[str, ...]  # purelib/platlib of the target (deduplicated)
    ext_suffixes: tuple[str, ...]  # importlib.machinery.EXTENSION_SUFFIXES
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"
    machine: str  # platform.machine()
    glibc: str | None  # the glibc the target interpreter runs on, e.g. "2.36"
    libdir: str | None = None  # sysconfig LIBDIR (for a shared libpython)
    ldlibrary: str | None = None  # sysconfig LDLIBRARY, e.g. "libpython3.11.so"
    soabi: str | None = None

    @property
    def version_str(self) -> str:
        return ".".join(str(p) for p in self.version)

    @property
    def markers_dict(self) -> dict[str, str]:
        return dict(self.markers)


@dataclass(frozen=True)
class Distribution:
    """One installed distribution: a pip dist-info or a conda-meta record."""

    name: str  # as the metadata spells it
    version: str
    source: Source
    metadata_path: str  # the dist-info directory or the conda-meta JSON file
    files: tuple[str, ...]  # absolute paths of every file it owns
    requires: tuple[str, ...] = ()  # Requires-Dist strings (pip) or `depends` specs (conda)
    installer: str | None = None  # INSTALLER file content ("pip", "conda", "uv", ...)
    editable: bool = False  # PEP 660 / develop install (direct_url.json dir_info.editable)
    direct_url: str | None = None  # direct_url.json "url" for VCS/local/editable installs
    build: str | None = None  # conda build string
    channel: str | None = None  # conda channel

    @property
    def key(self) -> str:
        """Normalized name (PEP 503) used to match requirements to installed dists."""
        return normalize_name(self.name)


@dataclass(frozen=True)
class ResolvedImport:
    """An import site mapped to the file it would load and the distribution owning it."""

    site: ImportSite
    kind: ImportKind
    file: str | None = None  # the file the target's import system would load
    distribution: str | None = None  # owning distribution's normalized name (third-party only)


@dataclass(frozen=True)
class Package:
    """One pinned member of the closure, with the edges that brought it in."""

    name: str
    version: str
    source: Source
    direct: bool  # imported by reached code (as opposed to required by another package)
    required_by: tuple[str, ...] = ()  # names of closure members (or "<import>") needing it
    optional: bool = False  # only reached through optional (guarded) imports
    requirement: str | None = None  # pinned requirement line with markers, for --format
    build: str | None = None  # conda build string


@dataclass(frozen=True)
class EditableSource:
    """An editable (`pip install -e`) or path install, followed as the user's own code.

    `style` says how the install puts its code on the path: "pth" (a directory line in a
    `.pth`: setuptools src layouts, hatch, flit, PDM, uv), "setuptools-finder" (PEP 660
    `__editable___*_finder.py` MAPPING), "editables" (the `editables` redirector of hatch
    `dev-mode-exact` / PDM), "setuptools-strict" (a tree of links under `build/__editable__.*`),
    "develop" (legacy `setup.py develop` / egg-link). `roots` are the directories its modules are
    found from (local roots of the analysis); `names` its top-level modules; `mode` is
    "functions" (reached functions followed, like any local file) or "whole" (every module
    followed and shipped unchanged: `--include NAME`, or required by an installed package).
    """

    name: str
    version: str
    style: str
    url: str | None
    metadata_path: str  # its .dist-info / .egg-info directory
    roots: tuple[str, ...]
    names: tuple[str, ...]
    mode: str = "functions"
    reason: str = "imported by reached code"


@dataclass(frozen=True)
class Exclusion:
    """A closure member that the archive does not contain, and why (`--exclude`, ...)."""

    name: str
    version: str
    reason: str


@dataclass(frozen=True)
class Analysis:
    """The product of `lfm-pack analyze`; also the lock that `pack` consumes.

    The lock written beside a pack describes that archive: `packages` are the members it ships,
    `excluded` the members the pack options left out (with the reason).
    """

    targets: tuple[TargetSpec, ...]
    env: EnvInfo
    imports: tuple[ResolvedImport, ...]
    local_files: tuple[str, ...]
    local_roots: tuple[str, ...]
    unresolved: tuple[ResolvedImport, ...]
    findings: tuple[Finding, ...]
    packages: tuple[Package, ...]
    placeholders: tuple[Placeholder, ...] = ()
    extra: tuple[tuple[str, str], ...] = field(default=())  # free-form provenance (tool version…)
    editables: tuple[EditableSource, ...] = ()  # editable installs whose source ships
    excluded: tuple[Exclusion, ...] = ()  # closure members the pack leaves out
