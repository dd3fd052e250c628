"""The pack's `.lfm/manifest.json` (schema lfm-pack.manifest/1) and its content-address, the env key.

The env key is computed *before* anything is built (lock content + local file hashes + the
interpreter binary + platform + content options) so `--cache-dir` can return an earlier pack at
once. The manifest lists every file with size, sha256 and mode, so the launcher (and a person)
can check an unpacked tree, plus the glibc the shipped binaries need and what was left out.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from lfm_pack._version import __version__
from lfm_pack.analyze.reach import target_root
from lfm_pack.lock import analysis_to_json
from lfm_pack.models import SCHEMA_MANIFEST, Analysis
from lfm_pack.pack import elf
from lfm_pack.pack.archive import Entry
from lfm_pack.pack.select import Options

MANIFEST_ARC = ".lfm/manifest.json"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def env_key(analysis: Analysis, opts: Options, compression: str, level: int | None) -> str:
    """sha256 over what determines the archive's bytes (see the module docstring).

    The lock's packages, targets and placeholders, the hash of every local and extra file, the
    interpreter binary's hash, the platform and the content-changing options. Absolute paths of
    the local files are not part of it: moving a project does not change its pack.
    """
    lock = analysis_to_json(analysis)
    local_hashes = sorted(
        (
            os.path.relpath(f, analysis.local_roots[0])
            if analysis.local_roots
            else os.path.basename(f),
            sha256_file(f),
        )
        for f in analysis.local_files
        if os.path.isfile(f)
    )
    extra = sorted(
        (os.path.basename(x), sha256_file(x)) for x in opts.extra_files if os.path.isfile(x)
    )
    exe = os.path.realpath(analysis.env.base_executable)
    data = {
        "tool": __version__,
        "packages": lock["packages"],
        "targets": [
            {k: t[k] for k in ("raw", "kind", "module", "qualname")} for t in lock["targets"]
        ],
        "placeholders": sorted(
            (os.path.basename(p.path), p.line, p.end_line, p.module, list(p.names))
            for p in analysis.placeholders
        ),
        "local": local_hashes,
        "extra": extra,
        "interpreter": sha256_file(exe) if os.path.isfile(exe) else exe,
        "env_kind": analysis.env.kind,
        "prefix": analysis.env.prefix,
        "platform": analysis.env.platform,
        "machine": analysis.env.machine,
        "options": {
            "include": sorted(opts.include),
            "exclude": sorted(opts.exclude),
            "strip": sorted(opts.strip),
            "editable_as_source": opts.editable_as_source,
            "skip_optional": opts.skip_optional,
            "compile": opts.compile,
            "compression": compression,
            "level": level,
            "mtime": os.environ.get("SOURCE_DATE_EPOCH"),
        },
    }
    return hashlib.sha256(canonical(data)).hexdigest()


def _entry_record(e: Entry) -> tuple[str, dict[str, Any]] | None:
    if e.kind != "file":
        return None
    if e.data is not None:
        return e.arcname, {
            "size": len(e.data),
            "sha256": hashlib.sha256(e.data).hexdigest(),
            "mode": e.mode,
        }
    assert e.source is not None
    return e.arcname, {
        "size": os.path.getsize(e.source),
        "sha256": sha256_file(e.source),
        "mode": e.mode,
    }


def file_table(entries: Iterable[Entry], threads: int | None = None) -> dict[str, dict[str, Any]]:
    """arcname -> {size, sha256, mode} for every regular file (hashing in threads: no GIL)."""
    files = [e for e in entries if e.kind == "file"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as ex:
        rows = [r for r in ex.map(_entry_record, files) if r is not None]
    return dict(sorted(rows))


def glibc_required(entries: Iterable[Entry]) -> str | None:
    """The newest GLIBC_x.y symbol version any shipped ELF file references."""
    versions: list[tuple[int, ...] | None] = []
    for e in entries:
        if e.kind != "file":
            continue
        if e.data is not None:
            if e.data[:4] == elf.ELF_MAGIC:
                info = elf.parse_bytes(e.data)
                versions.append(info.glibc if info else None)
        elif e.source is not None and elf.is_elf(e.source):
            info = elf.parse(e.source)
            versions.append(info.glibc if info else None)
    return elf.max_glibc(versions)


def build_manifest(
    *,
    name: str,
    key: str,
    analysis: Analysis,
    executable: str,
    app_paths: Sequence[str],
    app_of: Sequence[tuple[str, str]],
    files: dict[str, dict[str, Any]],
    glibc: str | None,
    excluded: Sequence[tuple[str, str]],
    needs_conda_unpack: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest dict of docs/architecture.md (its own entry is not in `files`)."""
    env = analysis.env
    app_by_file = dict(app_of)
    targets = []
    for t in analysis.targets:
        app_path = app_by_file.get(os.path.abspath(t.path))
        module = t.module
        if module is None and app_path is not None:
            # The name Python would import the file as (`job` from its own directory, or
            # `pkg.job` when it needs its package); the analysis used the same rule.
            module = target_root(t.path)[1]
        targets.append(
            {
                "raw": t.raw,
                "kind": t.kind,
                "module": module,
                "app_path": app_path,
                "qualname": t.qualname,
            }
        )
    data: dict[str, Any] = {
        "schema": SCHEMA_MANIFEST,
        "env_key": key,
        "name": name,
        "kind": env.kind,
        "python": {"version": env.version_str, "executable": executable},
        "platform": env.platform,
        "machine": env.machine,
        "glibc_required": glibc,
        "targets": targets,
        "app_paths": list(app_paths),
        "needs_conda_unpack": needs_conda_unpack,
        "files": files,
        "excluded": [{"name": n, "reason": r} for n, r in excluded],
        "build": {"tool": f"lfm-pack {__version__}", "prefix": env.prefix},
    }
    if extra:
        data.update(extra)
    return data


def manifest_entry(manifest: dict[str, Any]) -> Entry:
    return Entry(
        MANIFEST_ARC, data=(json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    )
