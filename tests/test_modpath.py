"""modpath.find_module against real directory layouts, cross-checked with importlib's PathFinder."""

from __future__ import annotations

import importlib.machinery
import sys
import zipfile
from pathlib import Path

import pytest

from lfm_pack.analyze.modpath import clear_caches, find_module

EXT = tuple(importlib.machinery.EXTENSION_SUFFIXES)


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _fresh() -> None:
    clear_caches()


def test_namespace_package_across_two_path_entries(tmp_path: Path) -> None:
    d1, d2 = tmp_path / "site1", tmp_path / "site2"
    touch(d1 / "google" / "protobuf" / "__init__.py")
    touch(d1 / "google" / "protobuf" / "message.py")
    touch(d2 / "google" / "cloud" / "storage.py")
    path = [str(d1), str(d2)]

    ns = find_module("google", path, EXT)
    assert ns is not None
    assert ns.path is None and ns.is_package and ns.is_namespace
    assert ns.search_locations == (str(d1 / "google"), str(d2 / "google"))
    assert ns.root == str(d1)

    pb = find_module("google.protobuf", path, EXT)
    assert pb is not None and pb.path == str(d1 / "google" / "protobuf" / "__init__.py")
    assert pb.search_locations == (str(d1 / "google" / "protobuf"),)
    msg = find_module("google.protobuf.message", path, EXT)
    assert msg is not None and msg.path == str(d1 / "google" / "protobuf" / "message.py")

    storage = find_module("google.cloud.storage", path, EXT)
    assert storage is not None
    assert storage.path == str(d2 / "google" / "cloud" / "storage.py")
    assert not storage.is_package
    assert find_module("google.nothing", path, EXT) is None


def test_extension_module_is_found_and_beats_source(tmp_path: Path) -> None:
    touch(tmp_path / f"fast{EXT[0]}")
    touch(tmp_path / "fast.py")
    touch(tmp_path / "pkg" / "__init__.py")
    touch(tmp_path / "pkg" / f"_speedups{EXT[-1]}")
    loc = find_module("fast", [str(tmp_path)], EXT)
    assert loc is not None and loc.path == str(tmp_path / f"fast{EXT[0]}")
    assert not loc.is_package
    sub = find_module("pkg._speedups", [str(tmp_path)], EXT)
    assert sub is not None and sub.path == str(tmp_path / "pkg" / f"_speedups{EXT[-1]}")


def test_package_beats_module_in_the_same_entry(tmp_path: Path) -> None:
    touch(tmp_path / "thing" / "__init__.py")
    touch(tmp_path / "thing.py")
    loc = find_module("thing", [str(tmp_path)], EXT)
    assert loc is not None
    assert loc.path == str(tmp_path / "thing" / "__init__.py") and loc.is_package


def test_earlier_entry_wins_but_namespace_portions_do_not(tmp_path: Path) -> None:
    d1, d2 = tmp_path / "a", tmp_path / "b"
    touch(d1 / "mod.py")
    touch(d2 / "mod" / "__init__.py")
    loc = find_module("mod", [str(d1), str(d2)], EXT)
    assert loc is not None and loc.path == str(d1 / "mod.py") and loc.root == str(d1)
    # A directory without __init__ is only a namespace portion: a later regular module wins.
    (d1 / "nsfirst").mkdir()
    touch(d2 / "nsfirst.py")
    loc = find_module("nsfirst", [str(d1), str(d2)], EXT)
    assert loc is not None and loc.path == str(d2 / "nsfirst.py") and loc.root == str(d2)


def test_plain_module_has_no_submodules_and_missing_is_none(tmp_path: Path) -> None:
    touch(tmp_path / "plain.py")
    assert find_module("plain.sub", [str(tmp_path)], EXT) is None
    assert find_module("absent", [str(tmp_path)], EXT) is None
    assert find_module("", [str(tmp_path)], EXT) is None
    assert find_module("a..b", [str(tmp_path)], EXT) is None
    assert find_module("plain", [str(tmp_path / "does-not-exist")], EXT) is None


def test_sourceless_pyc(tmp_path: Path) -> None:
    touch(tmp_path / "compiled.pyc")
    loc = find_module("compiled", [str(tmp_path)], EXT)
    assert loc is not None and loc.path == str(tmp_path / "compiled.pyc")


def test_zip_entry(tmp_path: Path) -> None:
    archive = tmp_path / "lib.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("zpkg/__init__.py", "")
        zf.writestr("zpkg/inner.py", "")
        zf.writestr("zmod.py", "")
    loc = find_module("zpkg.inner", [str(archive)], EXT)
    assert loc is not None and loc.path == f"{archive}/zpkg/inner.py"
    top = find_module("zmod", [str(archive)], EXT)
    assert top is not None and top.path == f"{archive}/zmod.py" and top.root == str(archive)


@pytest.mark.parametrize("name", ["google", "google.protobuf", "thing", "mod", "nsfirst", "x"])
def test_agrees_with_importlib_pathfinder(tmp_path: Path, name: str) -> None:
    """The emulation must give the same origin as the real finder (find_spec never executes)."""
    d1, d2 = tmp_path / "a", tmp_path / "b"
    touch(d1 / "google" / "protobuf" / "__init__.py")
    touch(d2 / "google" / "cloud" / "storage.py")
    touch(d1 / "thing" / "__init__.py")
    touch(d1 / "thing.py")
    touch(d1 / "mod.py")
    touch(d2 / "mod" / "__init__.py")
    (d1 / "nsfirst").mkdir()
    touch(d2 / "nsfirst.py")
    path = [str(d1), str(d2)]
    importlib.invalidate_caches()
    sys.path_importer_cache.clear()

    parts = name.split(".")
    search: list[str] | None = path
    spec = None
    for i in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i]), search)
        if spec is None:
            break
        search = list(spec.submodule_search_locations or [])
    ours = find_module(name, path, EXT)
    if spec is None:
        assert ours is None
        return
    assert ours is not None
    origin = spec.origin if spec.has_location else None
    assert ours.path == origin
    assert list(ours.search_locations) == list(spec.submodule_search_locations or [])
