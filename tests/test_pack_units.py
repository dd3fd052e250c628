"""The pack stage's building blocks on real files: archive, ELF facts, slicing, scripts."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from lfm_pack.errors import PackError
from lfm_pack.models import Placeholder
from lfm_pack.pack import archive, elf
from lfm_pack.pack.archive import Entry
from lfm_pack.pack.select import rewrite_script
from lfm_pack.pack.slicing import rewrite_source

RUNTIME = Path(__file__).resolve().parent.parent / "lfm_pack" / "launch" / "runtime"
BASE_EXE = os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _entries(tmp_path: Path) -> list[Entry]:
    src = tmp_path / "src"
    src.mkdir()
    big = src / "big.bin"
    big.write_bytes(os.urandom(3 << 20) + b"a" * (6 << 20))  # > one 4 MiB gzip member
    (src / "tool").write_text("#!/bin/sh\necho hi\n")
    (src / "tool").chmod(0o700)  # odd source mode: normalized in the archive
    (src / "small.txt").write_text("hello\n")
    (src / "small.txt").chmod(0o600)
    return archive.with_parent_dirs(
        [
            Entry("lib/data/big.bin", source=str(big)),
            Entry("bin/tool", source=str(src / "tool"), executable=True),
            Entry("a/small.txt", source=str(src / "small.txt")),
            Entry("bin/python3", link="python3.11"),
            Entry(".lfm/manifest.json", data=b"{}\n"),
        ]
    )


@pytest.mark.parametrize("comp", ["gzip", "zstd", "none"])
def test_archive_is_deterministic_and_normalized(tmp_path: Path, comp: archive.Compression) -> None:
    entries = _entries(tmp_path)
    a, b = tmp_path / f"a{archive.SUFFIX[comp]}", tmp_path / f"b{archive.SUFFIX[comp]}"
    archive.write_archive(entries, str(a), comp)
    archive.write_archive(list(reversed(entries)), str(b), comp, threads=1)
    assert _sha(a) == _sha(b)  # order of input and thread count do not matter
    assert archive.detect_compression(str(a)) == comp
    # the system tools read it (multi-member gzip included)
    flag = {"gzip": "-z", "zstd": "--zstd", "none": ""}[comp]
    listing = subprocess.run(
        ["tar", "-tv", *([flag] if flag else []), "-f", str(a)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    names = [ln.split()[-1] if "->" not in ln else ln.split()[-3] for ln in listing]
    assert names == sorted(names)
    out = tmp_path / "x"
    out.mkdir()
    archive.extract(str(a), str(out))
    assert (out / "lib/data/big.bin").read_bytes() == (tmp_path / "src/big.bin").read_bytes()
    assert os.readlink(out / "bin/python3") == "python3.11"
    assert (out / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert (out / "a/small.txt").stat().st_mode & 0o777 == 0o644
    assert (out / "a/small.txt").stat().st_mtime == archive.DEFAULT_MTIME


def test_archive_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    path = tmp_path / "a.tar"
    archive.write_archive(_entries(tmp_path), str(path), "none")
    with tarfile.open(path) as tar:
        members = tar.getmembers()
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", 1700000000)
    }
    assert [m.name for m in members if m.isdir()] == [".lfm", "a", "bin", "lib", "lib/data"]


def test_gzip_is_parallel_members_readable_by_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.tar.gz"
    archive.write_archive(_entries(tmp_path), str(path), "gzip", level=1)
    data = path.read_bytes()
    assert data.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") >= 3  # several members, mtime 0
    subprocess.run(["gzip", "-t", str(path)], check=True)


def test_elf_facts_of_the_real_interpreter() -> None:
    info = elf.parse(BASE_EXE)
    assert info is not None
    assert "libc.so.6" in info.needed
    readelf = subprocess.run(["readelf", "-V", BASE_EXE], capture_output=True, text=True).stdout
    versions = sorted(
        {
            tuple(int(x) for x in w[6:].split("."))
            for w in readelf.split()
            if w.startswith("GLIBC_2")
        }
    )
    assert info.glibc == versions[-1]
    assert elf.parse(__file__) is None
    assert not elf.is_elf(__file__)
    assert elf.max_glibc([(2, 17), None, (2, 34), (2, 4)]) == "2.34"


SRC = """import os
x = 1; import requests
from a.b import (c,
   d as e)
import numpy.linalg
import json  # kept


def f():
    return os.sep + json.dumps(x)


def g():
    return requests.get


def h():
    return numpy.linalg
"""


def test_placeholders_keep_lines_and_fail_only_on_use(tmp_path: Path) -> None:
    ph = [
        Placeholder("m.py", 2, 2, "requests", ("requests",)),
        Placeholder("m.py", 3, 4, "a.b", ("c", "e")),
        Placeholder("m.py", 5, 5, "numpy.linalg", ("numpy",)),
    ]
    out = rewrite_source(SRC, ph, "m.py")
    assert out.count("\n") == SRC.count("\n")
    assert out.splitlines()[0] == "import os" and out.splitlines()[5] == "import json  # kept"
    assert "import requests" not in out and "numpy" in out
    (tmp_path / "m.py").write_text(out)
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import m\n"
        "assert m.x == 1 and m.f() == '/1'\n"
        "for fn in (m.g, m.h):\n"
        "    try:\n"
        "        fn().anything\n"
        "    except ModuleNotFoundError as exc:\n"
        "        print(exc.name, getattr(exc, '__traceback__').tb_next.tb_lineno)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(RUNTIME), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["requests", "14", "numpy.linalg", "18"]


def test_placeholder_on_a_line_without_import_is_an_error() -> None:
    with pytest.raises(PackError, match="no import statement"):
        rewrite_source(SRC, [Placeholder("m.py", 9, 9, "os", ("os",))], "m.py")


def test_console_script_shebang_is_relocatable(tmp_path: Path) -> None:
    pip_script = b"#!/old/prefix/bin/python3.11\nimport sys\nprint('ran', sys.argv[1:])\n"
    new = rewrite_script(pip_script, "python3.11")
    assert new is not None and b"/old/prefix" not in new
    long_form = (
        b"#!/bin/sh\n'''exec' \"/very/long/bin/python3.11\" \"$0\" \"$@\"\n' '''\nprint(1)\n"
    )
    new2 = rewrite_script(long_form, "python3.11")
    assert new2 is not None and b"/very/long" not in new2 and new2.endswith(b"print(1)\n")
    assert rewrite_script(b"\x7fELF....", "python3.11") is None
    assert rewrite_script(b"#!/bin/bash\necho\n", "python3.11") is None
    # run it from a moved bin/ next to a python3.11 (a symlink to the real interpreter)
    bindir = tmp_path / "moved" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "python3.11").symlink_to(BASE_EXE)
    (bindir / "tool").write_bytes(new)
    (bindir / "tool").chmod(0o755)
    link = tmp_path / "elsewhere-tool"
    link.symlink_to(bindir / "tool")  # realpath: works through symlinks too
    proc = subprocess.run([str(link), "a", "b c"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ran ['a', 'b c']"


def test_scan_names_elf_runpath_shebang_and_symlink_leaks(tmp_path: Path) -> None:
    from lfm_pack.pack.interpreter import set_rpath
    from lfm_pack.pack.verify import scan_tree

    build = "/opt/build/env-1234"
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    (root / "bin").mkdir()
    so = root / "lib" / "libx.so"
    shutil.copyfile(BASE_EXE, so)
    set_rpath(so, f"{build}/lib:$ORIGIN")
    ok_so = root / "lib" / "libok.so"
    shutil.copyfile(BASE_EXE, ok_so)
    set_rpath(ok_so, "$ORIGIN/../lib")
    (root / "bin" / "tool").write_text(f"#!{build}/bin/python3.11\nprint(1)\n")
    (root / "bin" / "fine").write_text("#!/bin/sh\necho fine\n")
    (root / "lib" / "_sysconfigdata__linux.py").write_text(f"BUILD = '{build}'\n")  # inert
    (root / "bin" / "link").symlink_to(f"{build}/bin/python3.11")
    leaks, scanned = scan_tree(str(root), [build])
    assert scanned == 6
    assert sorted(leaks) == [
        "bin/link (symlink to /opt/build/env-1234/bin/python3.11)",
        f"bin/tool (shebang names {build})",
        f"lib/libx.so (ELF RUNPATH/RPATH {build}/lib)",
    ]


def test_conda_stdlib_trim_and_strip_rules() -> None:
    from lfm_pack.pack.conda import trim_reason

    v = (3, 11, 7)
    none: frozenset[str] = frozenset()
    assert trim_reason("lib/python3.11/test/test_os.py", v, set(), none) == "stdlib:test"
    assert (
        trim_reason("lib/python3.11/unittest/test/t.py", v, set(), none) == "stdlib:unittest/test"
    )
    assert trim_reason("lib/python3.11/tkinter/__init__.py", v, set(), none) == "stdlib:tkinter"
    assert trim_reason("lib/python3.11/tkinter/__init__.py", v, {"tkinter"}, none) is None
    assert trim_reason("lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile", v, set(), none)
    dyn = "lib/python3.11/lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so"
    assert (
        trim_reason(dyn, v, set(), none)
        == "stdlib:lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so"
    )
    assert trim_reason("lib/python3.11/os.py", v, set(), none) is None
    assert trim_reason("lib/libpython3.11.so.1.0", v, set(), none) is None
    sp = "lib/python3.11/site-packages/numpy/tests/test_x.py"
    assert trim_reason(sp, v, set(), none) is None
    assert trim_reason(sp, v, set(), frozenset({"tests"})) == ""
