"""Locate a module on a sys.path the way importlib's PathFinder would, without importing it.

lfm-pack never imports the code it analyses (pigar and poncho did, and ran user code), so the
question "which file would `import google.protobuf` load in the *target* environment?" is
answered from the filesystem alone: per path entry a regular package (directory with
`__init__`) wins, then a module file (source, extension, sourceless `.pyc`), and a directory
without `__init__` is only a namespace portion that is remembered while the scan goes on.
Dotted names resolve level by level through the parent's search locations, so a namespace
package spread over two site-packages directories resolves exactly as at run time.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class ModuleLocation:
    """Where one (possibly dotted) module would be loaded from.

    `path` is the file (`__init__.py` of a package, a `.py`, an extension, a `.pyc`), or None
    for a namespace package; `search_locations` is the package `__path__` (all namespace
    portions for a namespace package); `root` is the sys.path entry the top-level name was
    found under. For a module inside a zip/egg, `path` is `<archive>/<inner path>`.
    """

    name: str
    path: str | None
    is_package: bool
    search_locations: tuple[str, ...]
    root: str

    @property
    def is_namespace(self) -> bool:
        return self.path is None


_SOURCE_SUFFIXES = (".py",)
_BYTECODE_SUFFIXES = (".pyc",)


def _listdir(path: str) -> frozenset[str] | None:
    """Directory entries, cached while the directory's mtime is unchanged (like FileFinder)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _listdir_at(path, mtime)


@lru_cache(maxsize=4096)
def _listdir_at(path: str, mtime: int) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return None


@lru_cache(maxsize=256)
def _zip_names(path: str) -> frozenset[str] | None:
    try:
        with zipfile.ZipFile(path) as zf:
            return frozenset(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return None


def clear_caches() -> None:
    """Forget cached directory listings (tests create files between lookups)."""
    _listdir_at.cache_clear()
    _zip_names.cache_clear()


def _find_in_entry(
    entry: str, part: str, ext_suffixes: Sequence[str]
) -> tuple[str, str | None, bool] | None:
    """One path entry: ('pkg'|'mod'|'ns', file, is_package) or None (mirrors FileFinder)."""
    names = _listdir(entry or ".")
    if names is None:
        return None
    is_dir = part in names and os.path.isdir(os.path.join(entry, part))
    if is_dir:
        pkg_dir = os.path.join(entry, part)
        inner = _listdir(pkg_dir) or frozenset()
        for suffix in (*ext_suffixes, *_SOURCE_SUFFIXES, *_BYTECODE_SUFFIXES):
            if "__init__" + suffix in inner:
                return ("pkg", os.path.join(pkg_dir, "__init__" + suffix), True)
    for suffix in (*ext_suffixes, *_SOURCE_SUFFIXES, *_BYTECODE_SUFFIXES):
        if part + suffix in names:
            candidate = os.path.join(entry, part + suffix)
            if os.path.isfile(candidate):
                return ("mod", candidate, False)
    if is_dir:
        return ("ns", None, True)
    return None


def _find_in_zip(archive: str, inner: str, part: str) -> tuple[str, str | None, bool] | None:
    names = _zip_names(archive)
    if names is None:
        return None
    prefix = f"{inner}/" if inner else ""
    for init in ("__init__.py", "__init__.pyc"):
        if f"{prefix}{part}/{init}" in names:
            return ("pkg", f"{archive}/{prefix}{part}/{init}", True)
    for suffix in (".py", ".pyc"):
        if f"{prefix}{part}{suffix}" in names:
            return ("mod", f"{archive}/{prefix}{part}{suffix}", False)
    if any(n.startswith(f"{prefix}{part}/") for n in names):
        return ("ns", None, True)
    return None


def _split_zip(entry: str) -> tuple[str, str] | None:
    """`/x/a.egg/sub` -> ('/x/a.egg', 'sub') when the entry lives inside a zip archive."""
    probe = entry
    inner: list[str] = []
    while probe and probe != os.path.dirname(probe):
        if os.path.isfile(probe):
            if zipfile.is_zipfile(probe):
                return probe, "/".join(reversed(inner))
            return None
        inner.append(os.path.basename(probe))
        probe = os.path.dirname(probe)
    return None


def _find_one(
    part: str, search_path: Sequence[str], ext_suffixes: Sequence[str]
) -> tuple[str | None, bool, tuple[str, ...], str] | None:
    """Resolve one name component across `search_path` -> (file, is_pkg, locations, root)."""
    portions: list[str] = []
    first_root: str | None = None
    for entry in search_path:
        if os.path.isdir(entry or "."):
            hit = _find_in_entry(entry, part, ext_suffixes)
            base = os.path.join(entry, part)
        else:
            zipped = _split_zip(entry)
            if zipped is None:
                continue
            hit = _find_in_zip(zipped[0], zipped[1], part)
            base = f"{entry}/{part}"
        if hit is None:
            continue
        kind, file, is_pkg = hit
        if kind == "ns":
            portions.append(base)
            if first_root is None:
                first_root = entry
            continue
        locations = (os.path.dirname(file),) if is_pkg and file is not None else ()
        return file, is_pkg, locations, entry
    if portions and first_root is not None:
        return None, True, tuple(portions), first_root
    return None


def find_module(
    name: str, search_path: Sequence[str], ext_suffixes: Sequence[str]
) -> ModuleLocation | None:
    """Where `import name` would load from on `search_path`, or None if it would fail.

    Each dotted level is looked up only inside the previous level's search locations (its
    `__path__`), exactly like the import system; a plain module cannot have submodules.
    """
    if not name or any(not p for p in name.split(".")):
        return None
    parts = name.split(".")
    found = _find_one(parts[0], search_path, tuple(ext_suffixes))
    if found is None:
        return None
    file, is_pkg, locations, root = found
    for part in parts[1:]:
        if not is_pkg:
            return None
        found = _find_one(part, locations, tuple(ext_suffixes))
        if found is None:
            return None
        file, is_pkg, locations, _ = found
    return ModuleLocation(
        name=name, path=file, is_package=is_pkg, search_locations=locations, root=root
    )
