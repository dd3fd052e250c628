"""Prove a pack runs somewhere else before handing it over: the hidden-prefix check.

The archive is extracted to a fresh random directory; in a private mount namespace (`unshare
--mount` as root; as a normal user inside an unprivileged user namespace, `unshare --user
--map-root-user --mount`) tmpfs is mounted over the build environment's prefix, its base
interpreter's prefix and lfm-pack's own, so nothing can be loaded from where the pack was built.
The packed interpreter then runs in isolated mode (-I), imports every module the analysis found
and the target module, and reports the shared objects it mapped (a libpython from the host's
/usr/lib would be a silent relocation bug). Independently every file of the tree is scanned:
text files (shebangs included) and ELF RUNPATH/RPATH must not name the build prefix.

Without any namespace (no unshare, user namespaces disabled) only the scan runs, and the
result says so.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfm_pack.errors import VerifyError
from lfm_pack.models import Analysis
from lfm_pack.pack import archive, elf

#: Files that name the build prefix by design and never use it to find files at run time:
#: CPython's sysconfig build variables (CC, LIBDIR of the build), our own manifest (build.prefix
#: records where the pack came from) and conda-unpack, whose records hold the old prefix as the
#: string to replace.
INERT = ("_sysconfigdata_", ".lfm/manifest.json", "bin/conda-unpack")
SYSTEM_DIRS = frozenset({"/", "/usr", "/usr/local", "/opt", "/bin", "/lib", "/lib64", "/etc"})

_CHECK = r"""
import importlib, json, os, sys
root, spec = sys.argv[1], json.loads(sys.argv[2])
sys.path[:0] = [os.path.join(root, p) for p in spec["paths"]]
res = {"prefix": sys.prefix, "failed": {}, "optional_failed": {}, "imported": 0}
for name, optional in spec["modules"]:
    try:
        importlib.import_module(name)
        res["imported"] += 1
    except BaseException as exc:  # noqa: BLE001 - any failure is the finding
        res["optional_failed" if optional else "failed"][name] = f"{type(exc).__name__}: {exc}"
for path in spec["compile"]:
    try:
        with open(os.path.join(root, path), "rb") as fh:
            compile(fh.read(), path, "exec")
    except BaseException as exc:
        res["failed"][path] = f"{type(exc).__name__}: {exc}"
outside = set()
with open("/proc/self/maps") as fh:
    for line in fh:
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/"):
            p = parts[5].strip()
            if not os.path.realpath(p).startswith(os.path.realpath(root) + "/") and (
                    "libpython" in p or "/python3" in p or "site-packages" in p):
                outside.add(p)
res["outside"] = sorted(outside)
print("LFM-VERIFY " + json.dumps(res))
"""


@dataclass(frozen=True)
class VerifyResult:
    mode: str  # "hidden-prefix" or "scan-only"
    hidden: tuple[str, ...]
    imported: int
    scanned: int
    seconds: float
    notes: tuple[str, ...] = ()


def build_prefixes(analysis: Analysis) -> list[str]:
    """Paths that must not appear in the pack: the env prefix and its base interpreter's."""
    env = analysis.env
    exe_prefix = os.path.dirname(os.path.dirname(os.path.realpath(env.base_executable)))
    out: list[str] = []
    for p in (env.prefix, env.base_prefix, exe_prefix):
        for q in (p, os.path.realpath(p)):
            q = q.rstrip("/") or "/"
            if q not in SYSTEM_DIRS and q not in out:
                out.append(q)
    return out


def hide_targets(analysis: Analysis) -> tuple[list[str], list[str]]:
    """(dirs to cover with tmpfs, files to cover with /dev/null) inside the namespace."""
    env = analysis.env
    dirs = build_prefixes(analysis)
    dirs += [
        p
        for p in (sys.prefix, sys.base_prefix, os.path.realpath(sys.prefix))
        if p.rstrip("/") not in SYSTEM_DIRS
    ]
    files: list[str] = []
    if any(p.rstrip("/") in SYSTEM_DIRS for p in (env.prefix, env.base_prefix)):
        # a system interpreter: hide its stdlib and binary rather than /usr itself
        dirs += [env.stdlib_dir, env.platstdlib_dir, *env.site_packages, *env.sys_path]
        files.append(os.path.realpath(env.base_executable))
        if env.libdir and env.ldlibrary:
            lib = os.path.realpath(os.path.join(env.libdir, env.ldlibrary))
            if os.path.isfile(lib):
                files.append(lib)
    uniq = []
    for d in dirs:
        d = os.path.realpath(d)
        if os.path.isdir(d) and d not in uniq and d.rstrip("/") not in SYSTEM_DIRS:
            uniq.append(d)
    # an outer directory hides the inner ones already; mount only the outermost
    outer = [d for d in uniq if not any(d != o and d.startswith(o + "/") for o in uniq)]
    return sorted(outer), sorted(set(files))


@functools.cache
def namespace_argv() -> tuple[str, ...] | None:
    """The `unshare` prefix that gives a private mount namespace here, or None.

    Root gets a plain mount namespace. Anyone else gets one inside an unprivileged user
    namespace (`--user --map-root-user`), which most kernels allow (HPC users are never root):
    inside it tmpfs and bind mounts work on the user's own view of the filesystem only.
    """
    if not shutil.which("unshare"):
        return None
    tries: list[tuple[str, ...]] = (
        [("unshare", "--mount", "--propagation", "private")] if os.geteuid() == 0 else []
    )
    tries.append(("unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"))
    for argv in tries:
        try:
            proc = subprocess.run(
                [
                    *argv,
                    "sh",
                    "-c",
                    "mount -t tmpfs -o size=4k lfm-probe /mnt 2>/dev/null || "
                    "mount -t tmpfs -o size=4k lfm-probe /tmp",
                ],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0:
            return argv
    return None


def namespace_available() -> bool:
    """Whether a private mount namespace (as root, or in a user namespace) can be had here."""
    return namespace_argv() is not None


def _sh_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def run_hidden(
    argv: Sequence[str],
    hide_dirs: Sequence[str],
    hide_files: Sequence[str] = (),
    cwd: str | None = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in a private mount namespace with tmpfs over `hide_dirs` (also used by tests)."""
    script = ["set -e"]
    for d in hide_dirs:
        script.append(f"mount -t tmpfs -o size=64k,mode=0755 lfm-hidden {_sh_quote(d)}")
    for f in hide_files:
        script.append(f"mount --bind /dev/null {_sh_quote(f)}")
    script.append('exec "$@"')
    prefix = namespace_argv()
    if prefix is None:
        raise VerifyError(
            "no private mount namespace can be had here (unshare missing, or user namespaces "
            "disabled)",
            hint="ask the site to allow unprivileged user namespaces, or verify as root",
        )
    return subprocess.run(
        [
            *prefix,
            "sh",
            "-c",
            "\n".join(script),
            "lfm-hidden",
            *argv,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


def _clean_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    return {k: v for k, v in os.environ.items() if k in keep}


def modules_to_import(analysis: Analysis, placeholders_modules: set[str]) -> list[tuple[str, bool]]:
    mods: dict[str, bool] = {}
    for r in analysis.imports:
        if (
            r.kind in ("stdlib", "third-party", "builtin")
            and r.site.module not in placeholders_modules
        ):
            opt = r.site.optional
            mods[r.site.module] = mods.get(r.site.module, True) and opt
    return sorted(mods.items())


def scan_tree(root: str, prefixes: Sequence[str]) -> tuple[list[str], int]:
    """Files under `root` whose text or ELF search path names one of `prefixes`."""
    needles = [p.encode() for p in prefixes]
    leaks: list[str] = []
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for fn in files:
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, root)
            n += 1
            if os.path.islink(full):
                target = os.readlink(full)
                if any(target.startswith(p + "/") or target == p for p in prefixes):
                    leaks.append(f"{rel} (symlink to {target})")
                continue
            if any(x in rel for x in INERT) or fn.endswith((".pyc", ".pyo")):
                continue
            try:
                with open(full, "rb") as fh:
                    head = fh.read(8192)
                    if head[:4] == elf.ELF_MAGIC:
                        info = elf.parse(full)
                        paths = (*info.rpath, *info.runpath) if info else ()
                        bad = [p for p in paths if any(p.startswith(x.decode()) for x in needles)]
                        if bad:
                            leaks.append(f"{rel} (ELF RUNPATH/RPATH {':'.join(bad)})")
                        continue
                    if b"\0" in head:
                        continue  # other binary data
                    data = head + fh.read()
            except OSError:
                continue
            for needle in needles:
                if needle in data:
                    line_no = data[: data.index(needle)].count(b"\n") + 1
                    what = (
                        "shebang" if line_no == 1 and data.startswith(b"#!") else f"line {line_no}"
                    )
                    leaks.append(f"{rel} ({what} names {needle.decode()})")
                    break
    return leaks, n


def fresh_root(workdir: str | None = None) -> tuple[str, str]:
    """(base, root): a new random directory to extract a pack into (remove `base` after)."""
    base = os.path.abspath(tempfile.mkdtemp(prefix="lfm-verify-", dir=workdir))
    root = os.path.join(base, "x" + os.urandom(4).hex())
    os.mkdir(root)
    return base, root


def verify_archive(
    archive_path: str,
    analysis: Analysis,
    manifest: dict[str, object],
    *,
    conda_unpack: bool = False,
    workdir: str | None = None,
) -> VerifyResult:
    """Extract the archive to a fresh random path, then `verify_tree` it."""
    base, root = fresh_root(workdir)
    try:
        t0 = time.monotonic()
        archive.extract(archive_path, root)
        res = verify_tree(root, analysis, manifest, conda_unpack=conda_unpack)
        return VerifyResult(
            res.mode, res.hidden, res.imported, res.scanned, time.monotonic() - t0, res.notes
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def verify_tree(
    root: str,
    analysis: Analysis,
    manifest: dict[str, object],
    *,
    conda_unpack: bool = False,
) -> VerifyResult:
    """Hide the build prefixes, import everything, scan; VerifyError on any failure.

    `root` is a fresh extraction of the pack (it is modified: conda-unpack runs in it).
    """
    t0 = time.monotonic()
    base = os.path.abspath(tempfile.mkdtemp(prefix="lfm-check-", dir=os.path.dirname(root)))
    notes: list[str] = []
    try:
        exe = os.path.join(root, str(manifest["python"]["executable"]))  # type: ignore[index]
        placeholder_mods = {p.module for p in analysis.placeholders}
        targets = manifest["targets"]
        assert isinstance(targets, list)
        modules = modules_to_import(analysis, placeholder_mods)
        compile_only: list[str] = []
        for t in targets:
            if t["qualname"] is None and t["app_path"]:
                compile_only.append(t["app_path"])
            elif t["module"]:
                modules.append((t["module"], False))
        spec = {
            "paths": [".lfm/runtime", *manifest["app_paths"]],  # type: ignore[misc]
            "modules": modules,
            "compile": compile_only,
        }
        check = os.path.join(base, "check.py")
        Path(check).write_text(_CHECK)
        argv = [exe, "-I", "-B", check, root, json.dumps(spec)]
        mode = "scan-only"
        hidden: list[str] = []
        imported = 0
        if namespace_available():
            mode = "hidden-prefix"
            hide_dirs, hide_files = hide_targets(analysis)
            hide_dirs = [d for d in hide_dirs if not (root + "/").startswith(d + "/")]
            hidden = [*hide_dirs, *hide_files]
            if conda_unpack:
                unpack = os.path.join(root, "bin", "conda-unpack")
                # not -I: conda-unpack imports conda_unpack_progress from its own bin/ dir
                proc = run_hidden(
                    [exe, "-E", "-s", unpack], hide_dirs, hide_files, cwd=root, env=_clean_env()
                )
                if proc.returncode != 0:
                    raise VerifyError(
                        f"conda-unpack failed in the verification copy: {proc.stderr.strip()[-500:]}"
                    )
            proc = run_hidden(argv, hide_dirs, hide_files, cwd=base, env=_clean_env())
            out = [ln for ln in proc.stdout.splitlines() if ln.startswith("LFM-VERIFY ")]
            if proc.returncode != 0 or not out:
                raise VerifyError(
                    "the packed interpreter does not start from a hidden-prefix extraction: "
                    f"{(proc.stderr or proc.stdout).strip()[-800:]}",
                    hint="re-run with --no-verify --debug to keep the pack and inspect it",
                )
            res = json.loads(out[-1][len("LFM-VERIFY ") :])
            if os.path.realpath(res["prefix"]) != os.path.realpath(root):
                raise VerifyError(
                    f"the packed interpreter took {res['prefix']} as its prefix, not the extraction"
                )
            if res["failed"]:
                first = sorted(res["failed"].items())
                raise VerifyError(
                    f"{len(first)} module(s) fail to import from the pack: "
                    + "; ".join(f"{k}: {v}" for k, v in first[:5]),
                    hint="use --include PKG for a distribution the analysis missed",
                )
            if res["outside"]:
                raise VerifyError(
                    "the packed interpreter loaded files from outside the pack: "
                    + ", ".join(res["outside"][:5])
                )
            for k, v in sorted(res["optional_failed"].items()):
                notes.append(f"optional import {k} fails in the pack ({v})")
            imported = int(res["imported"])
        else:
            notes.append(
                "no private mount namespace here (unshare missing or user namespaces disabled):"
                " scan only"
            )
        leaks, scanned = scan_tree(root, build_prefixes(analysis))
        if leaks:
            raise VerifyError(
                f"the pack names the build prefix in {len(leaks)} file(s): " + "; ".join(leaks[:5]),
                hint="that file would break (or read the build host) on another node",
            )
        return VerifyResult(
            mode, tuple(hidden), imported, scanned, time.monotonic() - t0, tuple(notes)
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
