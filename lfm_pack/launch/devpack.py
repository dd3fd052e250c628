"""Build a minimal pack that follows the layout contract, for tests and benchmarks only.

The real pack stage (`lfm_pack.pack`) trims and relocates an interpreter and its closure; this
helper only symlinks an existing interpreter into `bin/`, copies the runtime and some app files
and writes a manifest with real sha256s, so the launcher and monitor can be exercised end to end
(real tarballs, real extraction, real processes) independently of the pack stage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lfm_pack.launch.launcher import render_launcher
from lfm_pack.paths import RUNTIME_PACKAGE

RUNTIME_SRC = RUNTIME_PACKAGE


@dataclass(frozen=True)
class DevPack:
    """Paths of a built dev pack."""

    launcher: Path
    archive: Path
    env_key: str
    manifest: dict[str, Any]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_dev_pack(
    out_dir: Path,
    *,
    name: str,
    python: str,
    app_files: dict[str, str],
    targets: list[dict[str, Any]],
    compression: Literal["gzip", "zstd", "none"] = "gzip",
    machine: str | None = None,
    glibc_required: str | None = "2.17",
    python_version: str | None = None,
    extra_files: dict[str, bytes] | None = None,
) -> DevPack:
    """Write `<name>.tar.{gz,zst}` and `<name>-run` into `out_dir`.

    `app_files` maps paths under `.lfm/app/0/` to source text; `targets` are manifest target
    entries (their `app_path` is relative to the env root).
    """
    import platform
    import sys

    out_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, bytes] = {}
    for src in sorted(RUNTIME_SRC.rglob("*.py")):
        entries[f".lfm/runtime/lfm_runtime/{src.relative_to(RUNTIME_SRC)}"] = src.read_bytes()
    for rel, text in app_files.items():
        entries[f".lfm/app/0/{rel}"] = text.encode()
    for rel, data in (extra_files or {}).items():
        entries[rel] = data
    real_python = os.path.realpath(python)
    links = {"bin/python": real_python, "bin/python3": real_python}
    files: dict[str, Any] = {
        rel: {"size": len(d), "sha256": _sha(d), "mode": 0o644} for rel, d in entries.items()
    }
    for rel, target in links.items():
        files[rel] = {"link": target}
    env_key = _sha(json.dumps(files, sort_keys=True).encode() + name.encode())[:32]
    version = python_version or _probe_version(real_python)
    manifest: dict[str, Any] = {
        "schema": "lfm-pack.manifest/1",
        "env_key": env_key,
        "name": name,
        "kind": "system",
        "python": {"version": version, "executable": "bin/python"},
        "platform": "linux-" + (machine or platform.machine()),
        "machine": machine or platform.machine(),
        "glibc_required": glibc_required,
        "targets": targets,
        "app_paths": [".lfm/app/0"],
        "needs_conda_unpack": False,
        "files": files,
        "excluded": [],
        "build": {"tool": "lfm-pack devpack", "prefix": sys.prefix},
    }
    entries[".lfm/manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    suffix = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}[compression]
    archive = out_dir / f"{name}{suffix}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted({str(Path(rel).parent) for rel in [*entries, *links]} - {"."}):
            parts = Path(d).parts
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                if sub not in tf.getnames():
                    ti = tarfile.TarInfo(sub)
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    tf.addfile(ti)
        for rel, target in links.items():
            ti = tarfile.TarInfo(rel)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
        for rel, data in sorted(entries.items()):
            ti = tarfile.TarInfo(rel)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    payload = raw.getvalue()
    if compression == "gzip":
        import gzip

        payload = gzip.compress(payload, mtime=0)
    elif compression == "zstd":
        import zstandard

        payload = zstandard.ZstdCompressor(level=3).compress(payload)
    archive.write_bytes(payload)
    launcher = out_dir / f"{name}-run"
    launcher.write_text(
        render_launcher(
            name=name,
            archive_name=archive.name,
            archive_sha256=_sha(payload),
            env_key=env_key,
            compression=compression,
            manifest=manifest,
            allow_absolute_links=True,
        )
    )
    launcher.chmod(0o755)
    return DevPack(launcher=launcher, archive=archive, env_key=env_key, manifest=manifest)


def _probe_version(python: str) -> str:
    import subprocess

    out = subprocess.run(
        [python, "-I", "-S", "-c", "import sys;print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def copy_runtime(dest: Path) -> None:
    """Copy the runtime package to `dest/lfm_runtime` (what the pack stage does)."""
    shutil.copytree(RUNTIME_SRC, dest / "lfm_runtime", ignore=shutil.ignore_patterns("__pycache__"))
