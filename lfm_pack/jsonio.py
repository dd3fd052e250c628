"""Atomic file output: every product is written to a temp name beside it and renamed.

A reader (or a later run) therefore sees either the complete file or none at all, even when
lfm-pack is killed mid-write or the disk fills up.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", perm: int = 0o644
) -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on success fsync and rename it over `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, perm)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as pretty, key-sorted JSON, atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")


def dumps(data: Any) -> str:
    """The one JSON style lfm-pack prints on stdout."""
    return json.dumps(data, indent=2, sort_keys=True)
