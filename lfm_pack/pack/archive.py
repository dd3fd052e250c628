"""Write a deterministic tar archive from a list of entries, compressed on every core.

Determinism (same entries -> byte-identical archive) is what makes packs content-addressable
and cacheable: entries are sorted, every header has the same mtime (`SOURCE_DATE_EPOCH`, else
1980-01-01: old enough to be obviously synthetic, new enough that GNU tar does not warn about an
"implausibly old time stamp" and zip-based tools accept it), uid/gid 0, empty user/group names,
modes normalized to 0755 (directories, executables) / 0644 (everything else), PAX format.

gzip is the default because every node has `tar xzf`; it is made multi-threaded the pigz way:
the tar stream is cut into fixed-size chunks, each compressed as an independent gzip member in a
thread pool (zlib releases the GIL), and the members are concatenated - a valid gzip stream that
`gzip -d`/`tar xzf` read. Each member's header has mtime 0 and no name, so the output depends only
on the bytes and the level. zstd (faster, smaller) needs `zstd` on the node; `none` is a plain tar.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import os
import shutil
import subprocess
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal

Compression = Literal["gzip", "zstd", "none"]
SUFFIX: dict[str, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}
DEFAULT_LEVEL: dict[str, int] = {"gzip": 6, "zstd": 3, "none": 0}
DEFAULT_MTIME = 315532800  # 1980-01-01T00:00:00Z
GZIP_CHUNK = 4 << 20  # 4 MiB per member: <0.5% size cost against one stream


def fixed_mtime() -> int:
    """The mtime written in every header: SOURCE_DATE_EPOCH when set (reproducible-builds.org)."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw and raw.strip().isdigit():
        return int(raw.strip())
    return DEFAULT_MTIME


@dataclass(frozen=True)
class Entry:
    """One archive member: a file copied from `source`, literal `data`, a symlink, or a dir.

    `arcname` is relative (no leading "./" or "/"); `executable` picks mode 0755 vs 0644.
    """

    arcname: str
    source: str | None = None
    data: bytes | None = None
    link: str | None = None
    is_dir: bool = False
    executable: bool = False

    @property
    def mode(self) -> int:
        return 0o755 if (self.is_dir or self.executable or self.link) else 0o644

    @property
    def kind(self) -> str:
        if self.is_dir:
            return "dir"
        if self.link is not None:
            return "symlink"
        return "file"


def with_parent_dirs(entries: Iterable[Entry]) -> list[Entry]:
    """Add an explicit directory entry for every parent, sorted by name (deterministic order)."""
    out: dict[str, Entry] = {}
    for e in entries:
        out[e.arcname] = e
        parts = e.arcname.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in out:
                out[d] = Entry(d, is_dir=True)
    return [out[k] for k in sorted(out)]


class _GzipChunkWriter(io.RawIOBase):
    """File-like sink: buffers writes, gzip-compresses fixed-size chunks in a thread pool."""

    def __init__(self, out: IO[bytes], level: int, threads: int) -> None:
        super().__init__()
        self._out = out
        self._level = level
        self._buf = bytearray()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads)
        self._pending: collections.deque[concurrent.futures.Future[bytes]] = collections.deque()
        self._window = max(2, threads * 2)

    def writable(self) -> bool:
        return True

    @staticmethod
    def _compress(chunk: bytes, level: int) -> bytes:
        co = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31 = gzip wrapper, mtime 0, no name
        return co.compress(chunk) + co.flush()

    def _submit(self, chunk: bytes) -> None:
        self._pending.append(self._pool.submit(self._compress, chunk, self._level))
        while len(self._pending) > self._window:
            self._out.write(self._pending.popleft().result())

    def write(self, b: Any) -> int:
        self._buf += b
        while len(self._buf) >= GZIP_CHUNK:
            self._submit(bytes(self._buf[:GZIP_CHUNK]))
            del self._buf[:GZIP_CHUNK]
        return len(b)

    def finish(self) -> None:
        if self._buf or not self._pending:
            self._submit(bytes(self._buf))
            self._buf.clear()
        while self._pending:
            self._out.write(self._pending.popleft().result())
        self._pool.shutdown()


def _tarinfo(e: Entry, mtime: int, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(e.arcname)
    ti.mtime = mtime
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = e.mode
    if e.is_dir:
        ti.type = tarfile.DIRTYPE
    elif e.link is not None:
        ti.type = tarfile.SYMTYPE
        ti.linkname = e.link
    else:
        ti.size = size
    return ti


def write_tar(
    entries: Iterable[Entry],
    fileobj: IO[bytes],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the sorted entries as an uncompressed PAX tar to `fileobj`; returns member count."""
    mtime = fixed_mtime()
    n = 0
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda x: x.arcname):
            n += 1
            if e.kind != "file":
                tar.addfile(_tarinfo(e, mtime, 0))
                continue
            if e.data is not None:
                tar.addfile(_tarinfo(e, mtime, len(e.data)), io.BytesIO(e.data))
                size = len(e.data)
            else:
                assert e.source is not None
                with open(e.source, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    tar.addfile(_tarinfo(e, mtime, size), fh)
            if progress:
                progress(size)
    return n


class _Tee(io.RawIOBase):
    """Write the tar stream to the compressor and, unchanged, to a second sink."""

    def __init__(self, first: IO[bytes], second: IO[bytes]) -> None:
        super().__init__()
        self._a: IO[bytes] = first
        self._b: IO[bytes] | None = second

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._a.write(b)
        if self._b is not None:
            try:
                self._b.write(b)
            except OSError:  # the reader died (e.g. disk full): the archive still gets written
                self._b = None
        return len(b)


def write_archive(
    entries: Iterable[Entry],
    path: str,
    compression: Compression = "gzip",
    level: int | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
    tee: IO[bytes] | None = None,
) -> int:
    """Write the archive to `path` (caller renames it into place); returns member count.

    `tee` also receives the uncompressed tar stream (the verifier pipes it into `tar -x`,
    which saves decompressing the archive again).
    """
    lvl = DEFAULT_LEVEL[compression] if level is None else level
    nthreads = threads or os.cpu_count() or 1

    def sink(sink_: IO[bytes]) -> IO[bytes]:
        return _Tee(sink_, tee) if tee is not None else sink_  # type: ignore[return-value]

    with open(path, "wb") as raw:
        if compression == "none":
            return write_tar(entries, sink(raw), progress)
        if compression == "gzip":
            gz = _GzipChunkWriter(raw, lvl, nthreads)
            try:
                n = write_tar(entries, sink(gz), progress)  # type: ignore[arg-type]
            finally:
                gz.finish()
            return n
        import zstandard

        # threads >= 1 selects zstd's multi-threaded mode, whose output does not depend on the
        # worker count (zstd guarantees this), so packs are reproducible across machines.
        cctx = zstandard.ZstdCompressor(level=lvl, threads=max(1, nthreads))
        with cctx.stream_writer(raw, closefd=False) as zw:
            return write_tar(entries, sink(zw), progress)


def detect_compression(path: str) -> Compression:
    """From the magic bytes: gzip, zstd or a plain tar."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return "none"


def extract(path: str, dest: str) -> None:
    """Extract an archive written by `write_archive` (any compression) into `dest`.

    Uses the system tar (as the launcher does, and several times faster) when present.
    """
    comp = detect_compression(path)
    tar_bin = shutil.which("tar")
    if tar_bin and (comp != "zstd" or shutil.which("zstd")):
        flag = {"gzip": ["-z"], "zstd": ["--zstd"], "none": []}[comp]
        proc = subprocess.run([tar_bin, "-x", *flag, "-f", path, "-C", dest], capture_output=True)
        if proc.returncode == 0:
            return
    with open(path, "rb") as raw:
        if comp == "zstd":
            import zstandard

            with (
                zstandard.ZstdDecompressor().stream_reader(raw) as zr,
                tarfile.open(fileobj=zr, mode="r|") as tar,
            ):
                _safe_extractall(tar, dest)
        elif comp == "gzip":
            import gzip

            # GzipFile reads concatenated members; tarfile's own "r|gz" stream reader does not
            with gzip.GzipFile(fileobj=raw) as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
                _safe_extractall(tar, dest)
        else:
            with tarfile.open(fileobj=raw, mode="r|") as tar:
                _safe_extractall(tar, dest)


def _safe_extractall(tar: tarfile.TarFile, dest: str) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="tar")
    else:  # pragma: no cover - Python < 3.10.12
        tar.extractall(dest)
