"""Verify an extracted env against `.lfm/manifest.json` before it is declared complete.

The launcher checked the archive's sha256 before extracting; this catches what can still go
wrong after that (a full disk, a truncated extraction, a tar that skipped files), so the
completion marker is only ever written over a tree whose every file has its recorded size and
hash. Entries with `sha256` are regular files; entries with `link`/`symlink` are symlinks.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any


SLIM = "launch.marshal"


def load(env_root: str) -> dict[str, Any]:
    """The full manifest (with the per-file table)."""
    import json

    with open(os.path.join(env_root, ".lfm", "manifest.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("schema") != "lfm-pack.manifest/1":
        raise ValueError("not an lfm-pack.manifest/1 manifest")
    return data


def write_slim(env_root: str, manifest: dict[str, Any]) -> None:
    """Cache the manifest minus its file table as marshal, written once at verification.

    Every warm run needs only targets, app paths and platform facts; reading them from marshal
    (built in, same interpreter) avoids importing json and parsing a file table of thousands of
    entries in the monitor on each run.
    """
    import marshal

    slim = {k: v for k, v in manifest.items() if k != "files"}
    tmp = os.path.join(env_root, ".lfm", SLIM + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(marshal.dumps(slim))
    os.replace(tmp, os.path.join(env_root, ".lfm", SLIM))


def load_slim(env_root: str) -> dict[str, Any]:
    """The manifest without `files`: from the marshal cache when present, else the JSON."""
    import marshal

    try:
        with open(os.path.join(env_root, ".lfm", SLIM), "rb") as fh:
            data = marshal.loads(fh.read())
        if isinstance(data, dict) and data.get("schema") == "lfm-pack.manifest/1":
            return data
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return load(env_root)


def _sha256(path: str) -> str:
    import hashlib  # only when verifying (cold path): ~3 ms of start-up otherwise

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def verify(env_root: str, manifest: dict[str, Any], limit: int = 20) -> list[str]:
    """Problems found (empty = the tree matches the manifest)."""
    problems: list[str] = []
    files = manifest.get("files") or {}
    for rel, entry in sorted(files.items()):
        if len(problems) >= limit:
            problems.append("... (more problems not listed)")
            break
        if not isinstance(entry, dict):
            continue
        path = os.path.join(env_root, rel)
        link = entry.get("link", entry.get("symlink"))
        if link is not None:
            try:
                if os.readlink(path) != link:
                    problems.append(f"{rel}: symlink points elsewhere")
            except OSError:
                problems.append(f"{rel}: missing symlink")
            continue
        if "sha256" not in entry:
            continue
        try:
            st = os.stat(path)
        except OSError:
            problems.append(f"{rel}: missing")
            continue
        if "size" in entry and st.st_size != entry["size"]:
            problems.append("%s: size %d, expected %d" % (rel, st.st_size, entry["size"]))
            continue
        if _sha256(path) != entry["sha256"]:
            problems.append(f"{rel}: sha256 mismatch")
    return problems
