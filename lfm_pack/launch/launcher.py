"""Render `<name>-run`, the POSIX sh launcher, from `launcher.sh` and the pack's facts.

The launcher must work on a node that has nothing of lfm-pack, so everything it needs to know
before the packed interpreter exists (archive name and sha256, env key, compression, CPU, glibc,
interpreter path, whether conda-unpack must run) is baked in here as single-quoted sh literals.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Literal

from lfm_pack._version import __version__

Compression = Literal["gzip", "zstd", "none"]

_DECOMPRESSOR = {"gzip": "gzip", "zstd": "zstd", "none": "nothing else"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def template() -> str:
    """The launcher template shipped with lfm-pack."""
    return resources.files("lfm_pack.launch").joinpath("launcher.sh").read_text(encoding="utf-8")


def _sh_single(value: str) -> str:
    """Body of a single-quoted sh literal ('...'): a quote becomes '\\''."""
    if "\n" in value or "\0" in value:
        raise ValueError(f"launcher value may not contain newlines: {value!r}")
    return value.replace("'", "'\\''")


def render_launcher(
    *,
    name: str,
    archive_name: str,
    archive_sha256: str,
    env_key: str,
    compression: Compression,
    manifest: dict[str, Any],
    allow_absolute_links: bool = False,
) -> str:
    """The text of `<name>-run` for one archive (write it with mode 0755 beside the archive).

    `manifest` is the pack's `.lfm/manifest.json` content (lfm-pack.manifest/1); the launcher
    takes `machine`, `glibc_required`, `python.executable`, `needs_conda_unpack` and the first
    target's `raw` from it. `allow_absolute_links` lets archive symlinks point to absolute paths
    (dev packs symlink the host interpreter); real packs never need it, and even then nothing
    may be extracted beneath such a link.
    """
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"pack name must be [A-Za-z0-9._+-]+, got {name!r}")
    if "/" in archive_name or not archive_name:
        raise ValueError(f"archive_name must be a bare file name, got {archive_name!r}")
    if not _HEX64.fullmatch(archive_sha256):
        raise ValueError("archive_sha256 must be 64 lowercase hex digits")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", env_key):
        raise ValueError(f"env_key must be a file-name-safe string, got {env_key!r}")
    if compression not in _DECOMPRESSOR:
        raise ValueError(f"compression must be gzip, zstd or none, got {compression!r}")
    python = (manifest.get("python") or {}).get("executable") or "bin/python"
    if python.startswith("/") or ".." in python.split("/"):
        raise ValueError(f"manifest python.executable must be relative to the env: {python!r}")
    targets = manifest.get("targets") or []
    target = str(targets[0].get("raw", name)) if targets else name
    values = {
        "NAME": name,
        "ARCHIVE_NAME": archive_name,
        "ARCHIVE_SHA256": archive_sha256,
        "ENV_KEY": env_key,
        "COMPRESSION": compression,
        "DECOMPRESSOR": _DECOMPRESSOR[compression],
        "MACHINE": str(manifest.get("machine") or ""),
        "GLIBC_REQUIRED": str(manifest.get("glibc_required") or ""),
        "PYTHON": python,
        "CONDA_UNPACK": "1" if manifest.get("needs_conda_unpack") else "0",
        "TARGET": target,
        "VERSION": __version__,
        "ALLOW_ABS_LINKS": "1" if allow_absolute_links else "0",
    }
    text = template()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", _sh_single(value))
    leftover = re.search(r"@@[A-Z_]+@@", text)
    if leftover:
        raise AssertionError(f"launcher template placeholder not filled: {leftover.group(0)}")
    return text
