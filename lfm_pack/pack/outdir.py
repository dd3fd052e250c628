"""The pack's output directory: checked before work starts, cleaned up when the pack fails.

`-o PATH` can be an existing file, sit under /proc, on a read-only mount or on a filesystem
that fills up half-way through a 2 GB archive. Each of these must end as one line naming the
path and the cause (exit 6), never as a traceback, and must leave nothing behind that the pack
created: the staging dir is removed by the build itself, the directories created for `-o` are
removed here (only if still empty: a user's files are never touched).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from lfm_pack.errors import PackError

#: errno -> what to tell the user (the errno name is always shown too)
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only filesystem",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "exists and is not a directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.ENOENT: "cannot be created here",
    errno.EFBIG: "file too large for this filesystem",
}
#: errnos that can only come from writing (a full or read-only output filesystem)
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def describe(exc: OSError) -> str:
    """`ENOSPC: no space left on the device` (errno name first: users search for it)."""
    name = errno.errorcode.get(exc.errno or 0, "EIO")
    return f"{name}: {_CAUSES.get(exc.errno or 0, exc.strerror or 'I/O error')}"


def _missing_parents(path: Path) -> list[Path]:
    """The directories `mkdir -p path` would create, outermost first."""
    out: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        out.append(p)
        p = p.parent
    return list(reversed(out))


def precheck(outdir: str | os.PathLike[str]) -> None:
    """The checks that need no write, done before a long analysis: PackError when `outdir`
    is a file, or its nearest existing ancestor is read-only or not writable by us."""
    path = Path(outdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise PackError(
            f"-o {outdir}: EEXIST: exists and is not a directory",
            hint="-o names a directory for the archive, the launcher and the lock",
        )
    anchor = path
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise PackError(f"-o {outdir}: ENOTDIR: {anchor} is not a directory")
    try:
        readonly = bool(os.statvfs(anchor).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    if readonly:
        raise PackError(
            f"-o {outdir}: EROFS: {anchor} is on a read-only filesystem",
            hint="choose a writable directory",
        )
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise PackError(
            f"-o {outdir}: EACCES: {anchor} is not writable by you",
            hint="choose a directory you can write to",
        )


def prepare(outdir: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """(resolved OUTDIR, the directories created for it); PackError when it cannot be one."""
    precheck(outdir)
    path = Path(outdir).expanduser().absolute()
    created = _missing_parents(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".lfm-pack-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        remove_created(created)
        raise PackError(
            f"-o {outdir}: cannot write the pack there ({describe(exc)})",
            hint="choose a writable directory on a local or shared filesystem",
        ) from None
    return path.resolve(), created


def remove_created(created: list[Path]) -> None:
    """Remove the directories `prepare` created, innermost first, if they are empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return  # not empty (or gone): leave it and its parents


@contextlib.contextmanager
def guarded(outdir: str | os.PathLike[str]) -> Iterator[Path]:
    """Run a pack into `outdir`: output-side OSErrors become one PackError; on any failure
    the directories made for `outdir` are removed again (when empty)."""
    path, created = prepare(outdir)
    try:
        yield path
    except OSError as exc:
        remove_created(created)
        where = exc.filename if isinstance(exc.filename, str) else None
        inside = where is not None and os.path.abspath(where).startswith(str(path) + os.sep)
        if exc.errno not in WRITE_ERRNOS and not inside:
            raise  # e.g. an unreadable file of the environment: not the output's fault
        where = where or str(outdir)
        raise PackError(
            f"writing the pack into {outdir} failed at {where} ({describe(exc)}); "
            "nothing was left under the output's final names",
            hint="free space or choose another -o; the archive needs about the size of the "
            "closure, compressed",
        ) from None
    except BaseException:
        remove_created(created)
        raise
