"""Orchestrate one pack: key -> cache -> select -> interpreter/conda -> manifest -> archive -> verify.

The only module of `pack/` that sequences the others and touches OUTDIR. Every product is built
inside a hidden staging directory in OUTDIR (same filesystem) and renamed into place only after
verification passed, so OUTDIR never holds a partial or unverified pack, even on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfm_pack.errors import PackError
from lfm_pack.jsonio import write_json_atomic
from lfm_pack.launch.launcher import render_launcher
from lfm_pack.lock import analysis_to_json
from lfm_pack.models import Analysis
from lfm_pack.pack import archive, manifest
from lfm_pack.pack.archive import Compression, Entry
from lfm_pack.pack.naming import checked_name, default_name
from lfm_pack.pack.select import Options
from lfm_pack.pack.verify import VerifyResult
from lfm_pack.paths import RUNTIME_PACKAGE

RUNTIME_DIR = RUNTIME_PACKAGE

#: A step callback: (description, total bytes or None) -> advance(n) function.
Progress = Callable[[str, int | None], Callable[[int], None]]


@dataclass(frozen=True)
class PackRequest:
    analysis: Analysis
    outdir: str
    name: str | None = None
    compression: Compression = "gzip"
    level: int | None = None
    options: Options = field(default_factory=Options)
    verify: bool = True
    cache_dir: str | None = None
    threads: int | None = None
    allow_missing: bool = False  # pack even when reached imports are installed nowhere


@dataclass(frozen=True)
class PackResult:
    name: str
    archive: str
    launcher: str
    lock: str
    env_key: str
    files: int
    bytes_in: int  # uncompressed payload
    bytes_out: int  # archive size
    seconds: float
    cached: bool
    env_bytes: int  # the whole environment, for comparison
    env_files: int
    distributions: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    verify: VerifyResult | None
    glibc_required: str | None
    write_seconds: float = 0.0  # building + compressing the archive

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "archive": self.archive,
            "launcher": self.launcher,
            "lock": self.lock,
            "env_key": self.env_key,
            "files": self.files,
            "bytes": self.bytes_in,
            "archive_bytes": self.bytes_out,
            "compression_ratio": round(self.bytes_in / self.bytes_out, 3)
            if self.bytes_out
            else None,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
            "environment": {"bytes": self.env_bytes, "files": self.env_files},
            "size_vs_environment": round(self.bytes_out / self.env_bytes, 4)
            if self.env_bytes
            else None,
            "distributions": list(self.distributions),
            "excluded": [{"name": n, "reason": r} for n, r in self.excluded],
            "notes": list(self.notes),
            "glibc_required": self.glibc_required,
            "timings": {
                "write": round(self.write_seconds, 3),
                "verify": None if self.verify is None else round(self.verify.seconds, 3),
            },
            "verify": None
            if self.verify is None
            else {
                "mode": self.verify.mode,
                "hidden": list(self.verify.hidden),
                "imported": self.verify.imported,
                "scanned": self.verify.scanned,
                "seconds": round(self.verify.seconds, 3),
                "notes": list(self.verify.notes),
            },
        }


def runtime_entries() -> list[Entry]:
    """lfm_runtime (stdlib-only code the launcher runs) under .lfm/runtime/."""
    if not RUNTIME_DIR.is_dir():
        raise PackError(f"lfm-pack is incomplete: {RUNTIME_DIR} is missing")
    out = []
    for dirpath, dirnames, filenames in os.walk(RUNTIME_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, RUNTIME_DIR.parent)
            out.append(Entry(f".lfm/runtime/{rel}", source=full))
    return out


def env_size(prefix: str) -> tuple[int, int]:
    """Bytes and files of the whole environment (what conda-pack/venv-pack would ship).

    A conda prefix's own package cache and nested envs are not part of it (conda-pack skips
    them too).
    """
    total = n = 0
    for dirpath, dirs, files in os.walk(prefix):
        if dirpath == prefix:
            dirs[:] = [d for d in dirs if d not in ("pkgs", "envs", "conda-bld")]
        for fn in files:
            try:
                st = os.lstat(os.path.join(dirpath, fn))
            except OSError:
                continue
            total += st.st_size
            n += 1
    return total, n


def _cached(req: PackRequest, key: str, name: str, suffix: str) -> PackResult | None:
    if not req.cache_dir:
        return None
    slot = Path(req.cache_dir) / key
    files = {k: slot / f"{name}{s}" for k, s in (("a", suffix), ("l", "-run"), ("k", ".lock.json"))}
    if not (slot / ".complete").is_file() or not all(p.is_file() for p in files.values()):
        return None
    summary = json.loads((slot / "summary.json").read_text())
    if req.verify and summary.get("verify") is None:
        return None  # an earlier --no-verify pack does not answer a verified request
    out = Path(req.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".lfm-pack-", dir=out))
    try:
        placed = {}
        for k, src in files.items():
            tmp = staging / src.name
            shutil.copy2(src, tmp)
            placed[k] = tmp
        final = {k: out / p.name for k, p in placed.items()}
        for k, tmp in placed.items():
            os.replace(tmp, final[k])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PackResult(
        name=name,
        archive=str(final["a"]),
        launcher=str(final["l"]),
        lock=str(final["k"]),
        env_key=key,
        files=summary["files"],
        bytes_in=summary["bytes"],
        bytes_out=os.path.getsize(final["a"]),
        seconds=0.0,
        cached=True,
        env_bytes=summary["environment"]["bytes"],
        env_files=summary["environment"]["files"],
        distributions=tuple(summary["distributions"]),
        excluded=tuple((e["name"], e["reason"]) for e in summary["excluded"]),
        notes=("returned from --cache-dir",),
        verify=None,
        glibc_required=summary.get("glibc_required"),
    )


def _store_cache(req: PackRequest, key: str, result: PackResult) -> None:
    if not req.cache_dir:
        return
    cache = Path(req.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    slot = cache / key
    if (slot / ".complete").is_file():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=cache))
    try:
        for p in (result.archive, result.launcher, result.lock):
            shutil.copy2(p, tmp / os.path.basename(p))
        write_json_atomic(tmp / "summary.json", result.to_json())
        (tmp / ".complete").write_text(key + "\n")
        if slot.exists():
            shutil.rmtree(slot)
        os.replace(tmp, slot)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class _Extractor:
    """`tar -x` reading the uncompressed tar stream on stdin into a fresh random directory."""

    proc: subprocess.Popen[bytes]
    base: str
    root: str

    def finish(self) -> bool:
        """Close the stream and wait; True when tar extracted everything."""
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except BrokenPipeError:
            pass
        return self.proc.wait() == 0


def _start_extractor(staging: Path) -> _Extractor | None:
    from lfm_pack.pack.verify import fresh_root

    tar = shutil.which("tar")
    if not tar:
        return None
    base, root = fresh_root(str(staging))
    proc = subprocess.Popen(
        [tar, "-x", "-f", "-", "-C", root], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    return _Extractor(proc, base, root)


def _nullprogress(desc: str, total: int | None) -> Callable[[int], None]:
    return lambda n: None


def _new_staging(out: Path) -> Path:
    """A hidden staging dir in OUTDIR (same filesystem: the final renames are atomic) that
    records its owner's pid, so a later pack can tell a dead pack's leftovers from a live one."""
    staging = Path(tempfile.mkdtemp(prefix=".lfm-pack-", dir=out))
    (staging / ".pid").write_text(str(os.getpid()))
    return staging


def _remove_dead_staging(out: Path) -> None:
    """Delete staging dirs left by packs that were killed (their pid is gone)."""
    for d in out.glob(".lfm-pack-*"):
        try:
            pid = int((d / ".pid").read_text())
        except (OSError, ValueError):
            continue  # not ours, or too young to have written its pid: leave it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            continue


def check_resolvable(analysis: Analysis, allow_missing: bool) -> list[str]:
    """Refuse a pack whose reached, unguarded imports are installed nowhere (it would fail on
    the node exactly where it fails at home); with `allow_missing`, return notes instead."""
    blocking = sorted({r.site.module for r in analysis.unresolved if not r.site.optional})
    if not blocking:
        return []
    if not allow_missing:
        where = next(r.site.location for r in analysis.unresolved if not r.site.optional)
        raise PackError(
            f"the target imports module(s) installed nowhere in the environment: "
            f"{', '.join(blocking)} (first at {where})",
            hint="install them, add the directory that holds them with --source-root DIR, or "
            "pass --allow-missing if that code path never runs",
        )
    return [f"shipped without {m}: installed nowhere (--allow-missing)" for m in blocking]


def build_pack(req: PackRequest, progress: Progress | None = None) -> PackResult:
    """Build, verify and place one pack (see the module docstring).

    The output directory is checked first and removed again if the pack fails (pack/outdir.py):
    a full, read-only or impossible `-o` is one PackError naming the path and the errno.
    """
    from lfm_pack.pack import outdir

    with outdir.guarded(req.outdir):
        return _build_pack(req, progress)


def _build_pack(req: PackRequest, progress: Progress | None = None) -> PackResult:
    t0 = time.monotonic()
    step = progress or _nullprogress
    opts = req.options
    # what this archive ships (--include/--exclude/--skip-optional applied): also its lock
    from lfm_pack.analyze.pipeline import for_pack

    a = for_pack(req.analysis, opts.include, opts.exclude, opts.skip_optional)
    missing_notes = check_resolvable(a, req.allow_missing)
    name = checked_name(req.name) if req.name else default_name(a)
    key = manifest.env_key(a, opts, req.compression, req.level)
    suffix = archive.SUFFIX[req.compression]
    hit = _cached(req, key, name, suffix)
    if hit is not None:
        return hit

    out = Path(req.outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(out)
    staging = _new_staging(out)
    try:
        notes: list[str] = list(missing_notes)
        needs_unpack = False
        if a.env.kind == "conda":
            from lfm_pack.pack import conda

            cplan = conda.plan_conda(a, opts, staging / "conda")
            entries = list(cplan.entries)
            executable = cplan.executable
            excluded = list(cplan.excluded)
            notes += cplan.notes
            dists = cplan.distributions
            app_paths, app_of = cplan.app_paths, cplan.app_of
            needs_unpack = cplan.needs_conda_unpack
        else:
            from lfm_pack.analyze.distributions import load_index
            from lfm_pack.pack.interpreter import plan_interpreter, site_dir_arc
            from lfm_pack.pack.select import select_pip

            sel = select_pip(a, load_index(a.env), opts, site_dir_arc(a.env))
            keep = {r.site.module.split(".")[0] for r in a.imports if r.kind == "stdlib"}
            interp = plan_interpreter(a.env, staging / "interp", keep=keep)
            merged: dict[str, Entry] = {e.arcname: e for e in interp.entries}
            for e in sel.entries:
                merged.setdefault(e.arcname, e)
            entries = [merged[k] for k in sorted(merged)]
            executable = interp.executable
            excluded = [*sel.excluded, *interp.excluded]
            notes += sel.notes
            if interp.bundled_libs:
                notes.append("bundled native libraries: " + ", ".join(interp.bundled_libs))
            dists = tuple(f"{d.name}=={d.version}" for d in sel.distributions)
            app_paths, app_of = sel.app_paths, sel.app_of
        entries += runtime_entries()
        if opts.compile:
            from lfm_pack.pack.pycompile import compile_entries

            entries += compile_entries(entries, a.env, staging / "pyc")
        files = manifest.file_table(entries, req.threads)
        glibc = manifest.glibc_required(entries)
        man = manifest.build_manifest(
            name=name,
            key=key,
            analysis=a,
            executable=executable,
            app_paths=app_paths,
            app_of=app_of,
            files=files,
            glibc=glibc,
            excluded=excluded,
            needs_conda_unpack=needs_unpack,
        )
        entries.append(manifest.manifest_entry(man))
        entries = archive.with_parent_dirs(entries)
        bytes_in = sum(f["size"] for f in files.values())

        tmp_archive = staging / f"{name}{suffix}"
        t_write = time.monotonic()
        extractor = _start_extractor(staging) if req.verify else None
        try:
            archive.write_archive(
                entries,
                str(tmp_archive),
                req.compression,
                req.level,
                req.threads,
                progress=step(f"writing {tmp_archive.name}", bytes_in),
                tee=extractor.proc.stdin if extractor else None,
            )
        finally:
            extracted = extractor.finish() if extractor else False
        write_seconds = time.monotonic() - t_write
        tmp_lock = staging / f"{name}.lock.json"
        write_json_atomic(tmp_lock, analysis_to_json(a))
        tmp_launcher = staging / f"{name}-run"
        text = render_launcher(
            name=name,
            archive_name=tmp_archive.name,
            archive_sha256=manifest.sha256_file(str(tmp_archive)),
            env_key=key,
            compression=req.compression,
            manifest=man,
        )
        tmp_launcher.write_text(text)
        os.chmod(tmp_launcher, 0o755)

        vres = None
        if req.verify:
            step("verifying (hidden build prefix)", None)
            from lfm_pack.pack.verify import verify_archive, verify_tree

            if extractor is not None and extracted:
                # the very tar stream that was compressed, extracted while it was written
                vres = verify_tree(extractor.root, a, man, conda_unpack=needs_unpack)
                shutil.rmtree(extractor.base, ignore_errors=True)
            else:
                vres = verify_archive(
                    str(tmp_archive), a, man, conda_unpack=needs_unpack, workdir=str(staging)
                )
            notes += vres.notes
        # The launcher is the commit point (it records the archive's sha256): publish it last,
        # so an interrupted publish never leaves a launcher pointing at a missing archive.
        final = {p: out / p.name for p in (tmp_lock, tmp_archive, tmp_launcher)}
        os.chmod(tmp_archive, 0o644)
        for src, dst in final.items():
            os.replace(src, dst)
        env_bytes, env_files = env_size(a.env.prefix)
        result = PackResult(
            name=name,
            archive=str(final[tmp_archive]),
            launcher=str(final[tmp_launcher]),
            lock=str(final[tmp_lock]),
            env_key=key,
            files=len(files),
            bytes_in=bytes_in,
            bytes_out=os.path.getsize(final[tmp_archive]),
            seconds=time.monotonic() - t0,
            cached=False,
            env_bytes=env_bytes,
            env_files=env_files,
            distributions=tuple(dists),
            excluded=tuple(excluded),
            notes=tuple(notes),
            verify=vres,
            glibc_required=glibc,
            write_seconds=write_seconds,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _store_cache(req, key, result)
    return result
