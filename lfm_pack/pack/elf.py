"""Read the few ELF facts packing needs: NEEDED, RUNPATH/RPATH and the GLIBC versions required.

A small parser over the section headers (no pyelftools dependency): the pack must know which
shared libraries to bundle, whether a binary still points at the build prefix, and the newest
glibc symbol version any binary needs (the node's glibc must be at least that).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
SHT_DYNAMIC = 6
SHT_GNU_VERNEED = 0x6FFFFFFE
DT_NEEDED = 1
DT_RPATH = 15
DT_RUNPATH = 29
DT_SONAME = 14

_GLIBC_RE = re.compile(rb"GLIBC_(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ElfInfo:
    """Dynamic-linking facts of one ELF file."""

    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    soname: str | None
    glibc: tuple[int, ...] | None  # newest GLIBC_x.y version referenced, None if none


def is_elf(path: str | Path) -> bool:
    """True when the file starts with the ELF magic (cheap: reads 4 bytes)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == ELF_MAGIC
    except OSError:
        return False


def _cstr(blob: bytes, off: int) -> str:
    end = blob.find(b"\0", off)
    return blob[off : end if end >= 0 else len(blob)].decode("utf-8", "replace")


def parse(path: str | Path) -> ElfInfo | None:
    """Parse `path`; None when it is not an ELF file or is truncated/corrupt."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    try:
        return parse_bytes(data)
    except (struct.error, IndexError, ValueError):
        return None


def parse_bytes(data: bytes) -> ElfInfo | None:
    """Parse an in-memory ELF image (see `parse`)."""
    if data[:4] != ELF_MAGIC:
        return None
    is64 = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    if is64:
        (shoff,) = struct.unpack_from(end + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x3A)
        sh_fmt = end + "IIQQQQIIQQ"
        dyn_fmt, dyn_size = end + "qQ", 16
    else:
        (shoff,) = struct.unpack_from(end + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(end + "HH", data, 0x2E)
        sh_fmt = end + "IIIIIIIIII"
        dyn_fmt, dyn_size = end + "iI", 8
    sections = []
    for i in range(shnum):
        f = struct.unpack_from(sh_fmt, data, shoff + i * shentsize)
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        sections.append(f)
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    soname: str | None = None
    glibc: tuple[int, ...] | None = None
    for sec in sections:
        stype, off, size, link = sec[1], sec[4], sec[5], sec[6]
        if stype == SHT_DYNAMIC:
            strsec = sections[link]
            strtab = data[strsec[4] : strsec[4] + strsec[5]]
            for j in range(size // dyn_size):
                tag, val = struct.unpack_from(dyn_fmt, data, off + j * dyn_size)
                if tag == 0:
                    break
                if tag == DT_NEEDED:
                    needed.append(_cstr(strtab, val))
                elif tag == DT_RPATH:
                    rpath.extend(p for p in _cstr(strtab, val).split(":") if p)
                elif tag == DT_RUNPATH:
                    runpath.extend(p for p in _cstr(strtab, val).split(":") if p)
                elif tag == DT_SONAME:
                    soname = _cstr(strtab, val)
        elif stype == SHT_GNU_VERNEED:
            strsec = sections[link]
            strtab = data[strsec[4] : strsec[4] + strsec[5]]
            glibc = _max_version(glibc, _verneed_glibc(data, end, off, sec[7], strtab))
    return ElfInfo(tuple(needed), tuple(rpath), tuple(runpath), soname, glibc)


def _verneed_glibc(
    data: bytes, end: str, off: int, count: int, strtab: bytes
) -> tuple[int, ...] | None:
    """Walk Elf_Verneed/Elf_Vernaux records; return the newest GLIBC_ version named."""
    best: tuple[int, ...] | None = None
    pos = off
    for _ in range(count):
        _vn_version, vn_cnt, _vn_file, vn_aux, vn_next = struct.unpack_from(
            end + "HHIII", data, pos
        )
        apos = pos + vn_aux
        for _ in range(vn_cnt):
            _hash, _flags, _other, vna_name, vna_next = struct.unpack_from(
                end + "IHHII", data, apos
            )
            m = _GLIBC_RE.fullmatch(_cstr(strtab, vna_name).encode())
            if m:
                best = _max_version(best, tuple(int(g) for g in m.groups() if g is not None))
            if not vna_next:
                break
            apos += vna_next
        if not vn_next:
            break
        pos += vn_next
    return best


def _max_version(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> tuple[int, ...] | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def max_glibc(versions: list[tuple[int, ...] | None]) -> str | None:
    """The newest of several GLIBC versions as "x.y" text (None if none)."""
    best: tuple[int, ...] | None = None
    for v in versions:
        best = _max_version(best, v)
    return ".".join(str(p) for p in best) if best else None
