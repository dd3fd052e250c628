"""Hostile archives against the real launcher: nothing may land outside the cache's temp dir.

Each hostile archive is given a launcher rendered for *its* sha256 (an attacker who controls
both, or a buggy pack stage), so the sha256 gate passes and only the launcher's member checks
on the `tar -tv` listing stand between the archive and the file system. Every case asserts the
refusal (exit 83, the offending member named), that the planted target outside never appears,
and that the cache holds no env and no temp dir. A control archive built by the same code
without the hostile member extracts and runs, so the builder itself is not what fails.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pythons import base_python

from lfm_pack.launch.devpack import DevPack, build_dev_pack
from lfm_pack.launch.launcher import render_launcher

PYTHON = base_python()  # the interpreter running the tests, resolved to its base
SH = shutil.which("dash") or "/bin/sh"
INFRA = 83

JOB = "def f(x):\n    return x\n"
TARGET = {
    "raw": "job.py:f",
    "kind": "file",
    "module": "job",
    "app_path": ".lfm/app/0/job.py",
    "qualname": "f",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> DevPack:
    return build_dev_pack(
        tmp_path_factory.mktemp("base"),
        name="hx",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[TARGET],
    )


Member = Callable[[Path], tuple[tarfile.TarInfo, bytes | None]]


def _file(name: str, mode: int = 0o644, data: bytes = b"pwned\n") -> Member:
    def make(_outside: Path) -> tuple[tarfile.TarInfo, bytes | None]:
        ti = tarfile.TarInfo(name.replace("@OUT@", str(_outside)))
        ti.size, ti.mode = len(data), mode
        return ti, data

    return make


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    def make(outside: Path) -> tuple[tarfile.TarInfo, bytes | None]:
        ti = tarfile.TarInfo(name.replace("@OUT@", str(outside)))
        ti.type = kind
        ti.linkname = linkname.replace("@OUT@", str(outside))
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            ti.devmajor, ti.devminor = 1, 3
        return ti, None

    return make


def hostile_pack(
    base: DevPack,
    out: Path,
    outside: Path,
    members: list[Member],
    *,
    allow_abs: bool = True,
) -> Path:
    """`base`'s archive with `members` put FIRST, and a launcher for the new sha256."""
    out.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(gzip.decompress(base.archive.read_bytes()))) as src,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as dst,
    ):
        for make in members:
            ti, data = make(outside)
            dst.addfile(ti, io.BytesIO(data) if data is not None else None)
        for ti in src.getmembers():
            fh = src.extractfile(ti) if ti.isreg() else None
            dst.addfile(ti, fh)
    payload = gzip.compress(raw.getvalue(), mtime=0)
    archive = out / base.archive.name
    archive.write_bytes(payload)
    launcher = out / "hx-run"
    import hashlib

    launcher.write_text(
        render_launcher(
            name="hx",
            archive_name=archive.name,
            archive_sha256=hashlib.sha256(payload).hexdigest(),
            env_key=base.env_key,
            compression="gzip",
            manifest=base.manifest,
            allow_absolute_links=allow_abs,
        )
    )
    launcher.chmod(0o755)
    return launcher


def run(launcher: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SH, str(launcher), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# (id, members, words the error must contain, allow absolute symlinks)
CASES: list[tuple[str, list[Member], str, bool]] = [
    ("absolute-path", [_file("@OUT@/abs-pwned")], "absolute path", True),
    ("dotdot-leading", [_file("../../dotdot-pwned")], "contains ..", True),
    ("dotdot-inner", [_file("lib/../../../inner-pwned")], "contains ..", True),
    ("dotdot-dir", [_special("../../evil-dir", tarfile.DIRTYPE)], "contains ..", True),
    (
        "symlink-abs-then-write",
        [_special("evil", tarfile.SYMTYPE, "@OUT@"), _file("evil/through-abs-link")],
        "beneath the symlink evil",
        True,
    ),
    (
        "symlink-abs-real-pack",
        [_special("lib/evil", tarfile.SYMTYPE, "/etc")],
        "absolute path /etc",
        False,
    ),
    (
        "symlink-relative-escape",
        [_special("evil", tarfile.SYMTYPE, "../../..")],
        "points outside the env",
        True,
    ),
    (
        "symlink-deep-escape",
        [_special("a/b/evil", tarfile.SYMTYPE, "../../../x")],
        "points outside the env",
        True,
    ),
    (
        "symlink-chain-escape",
        [_special("a", tarfile.SYMTYPE, "."), _special("b", tarfile.SYMTYPE, "a/..")],
        "symlink b points outside",
        True,
    ),
    (
        "symlink-relative-then-write",
        [_special("up", tarfile.SYMTYPE, "../.."), _file("up/through-rel-link")],
        "symlink up points outside",
        True,
    ),
    (
        "hardlink-absolute",
        [_special("h", tarfile.LNKTYPE, "/etc/passwd")],
        "hard link h points outside",
        True,
    ),
    (
        "hardlink-dotdot",
        [_special("h", tarfile.LNKTYPE, "../../secret")],
        "hard link h points outside",
        True,
    ),
    (
        "hardlink-through-symlink",
        [_special("d", tarfile.SYMTYPE, "@OUT@"), _special("h", tarfile.LNKTYPE, "d/secret")],
        "through a symlink",
        True,
    ),
    ("char-device", [_special("dev-null", tarfile.CHRTYPE)], "type c", True),
    ("block-device", [_special("dev-blk", tarfile.BLKTYPE)], "type b", True),
    ("fifo", [_special("a-fifo", tarfile.FIFOTYPE)], "type p", True),
    ("setuid", [_file("bin/suid", mode=0o4755)], "setuid/setgid", True),
    ("setgid", [_file("bin/sgid", mode=0o2755)], "setuid/setgid", True),
    ("setgid-no-x", [_file("bin/sgid2", mode=0o2644)], "setuid/setgid", True),
    (
        "duplicate-swapped-for-symlink",
        [_file("dup"), _special("dup", tarfile.SYMTYPE, "@OUT@/dup-target"), _file("dup")],
        "appears twice",
        True,
    ),
    (
        "name-with-arrow",
        [_special("x -> y", tarfile.SYMTYPE, "@OUT@")],
        "",
        True,
    ),
]


@pytest.mark.parametrize(
    ("members", "words", "allow_abs"),
    [pytest.param(m, w, a, id=i) for i, m, w, a in CASES],
)
def test_hostile_member_refused_before_anything_is_written(
    base: DevPack, tmp_path: Path, members: list[Member], words: str, allow_abs: bool
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("keep")
    cache = tmp_path / "work" / "cache"
    launcher = hostile_pack(base, tmp_path / "dist", outside, members, allow_abs=allow_abs)
    before = tree(tmp_path)
    p = run(launcher, cache, "--", "1")
    assert p.returncode == INFRA, p.stderr
    assert "refusing" in p.stderr and words in p.stderr, p.stderr
    # Nothing written anywhere but the cache's lock files.
    after = [e for e in tree(tmp_path) if e not in before]
    assert all(e.startswith("work") for e in after), after
    assert sorted(p.name for p in cache.iterdir()) == [
        f".{base.env_key}.lock",
        f".{base.env_key}.use",
    ]
    assert (outside / "secret").read_text() == "keep"
    assert tree(outside) == ["secret"]


def test_control_the_same_builder_without_hostile_members_runs(
    base: DevPack, tmp_path: Path
) -> None:
    """The hostile builder itself yields a working pack: refusals above are the checks'."""
    launcher = hostile_pack(base, tmp_path / "dist", tmp_path, [_file(".lfm/extra.txt")])
    p = run(launcher, tmp_path / "cache", "--", '"ok"')
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == "ok"
    # A safe relative symlink and a hard link inside the env are fine.
    launcher = hostile_pack(
        base,
        tmp_path / "dist2",
        tmp_path,
        [
            _file("lib/real.txt"),
            _special("lib/alias", tarfile.SYMTYPE, "real.txt"),
            _special("lib/sub/up", tarfile.SYMTYPE, "../real.txt"),
            _special("lib/hard", tarfile.LNKTYPE, "lib/real.txt"),
        ],
    )
    p = run(launcher, tmp_path / "cache2", "--", "2")
    assert p.returncode == 0, p.stderr
    env = tmp_path / "cache2" / base.env_key
    assert (env / "lib" / "alias").read_text() == "pwned\n"
    assert os.readlink(env / "lib" / "sub" / "up") == "../real.txt"


def test_extracted_files_carry_no_foreign_owner_or_special_bits(
    base: DevPack, tmp_path: Path
) -> None:
    """Root extracting: stored owners are ignored (--no-same-owner), so nothing is nobody's."""

    def owned_by_nobody(_o: Path) -> tuple[tarfile.TarInfo, bytes | None]:
        ti = tarfile.TarInfo("lib/nobodys.txt")
        ti.size, ti.uid, ti.gid, ti.uname, ti.gname = 2, 65534, 65534, "nobody", "nogroup"
        ti.mode = 0o666
        return ti, b"hi"

    launcher = hostile_pack(base, tmp_path / "dist", tmp_path, [owned_by_nobody])
    p = run(launcher, tmp_path / "cache", "--", "1")
    assert p.returncode == 0, p.stderr
    st = (tmp_path / "cache" / base.env_key / "lib" / "nobodys.txt").stat()
    assert st.st_uid == os.getuid()
    assert st.st_mode & 0o022 == 0  # stored 0666 not restored: the umask applies


def _tamper(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_tamper, id="one-byte-flipped"),
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(lambda d: b"", id="empty"),
        pytest.param(lambda d: d + b"\0" * 1024, id="padded"),
    ],
)
def test_checksum_mismatch_refused_cache_untouched(
    base: DevPack, tmp_path: Path, mutate: Callable[[bytes], bytes]
) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(base.archive.parent, dist)
    arch = dist / base.archive.name
    arch.write_bytes(mutate(arch.read_bytes()))
    cache = tmp_path / "cache"
    p = run(dist / "hx-run", cache, "--", "1")
    assert p.returncode == INFRA, p.stderr
    assert "checksum mismatch" in p.stderr
    assert [c.name for c in cache.iterdir() if not c.name.endswith((".lock", ".use"))] == []


def test_wrong_archive_beside_the_launcher_and_via_archive_option(
    base: DevPack, tmp_path: Path
) -> None:
    other = build_dev_pack(
        tmp_path / "other",
        name="hx",
        python=PYTHON,
        app_files={"job.py": JOB + "# another build\n"},
        targets=[TARGET],
    )
    dist = tmp_path / "dist"
    dist.mkdir()
    shutil.copy(base.launcher, dist / "hx-run")
    shutil.copy(other.archive, dist / base.archive.name)  # same name, other content
    cache = tmp_path / "cache"
    p = run(dist / "hx-run", cache, "--", "1")
    assert p.returncode == INFRA and "checksum mismatch" in p.stderr, p.stderr
    p = run(base.launcher, cache, "--archive", str(other.archive), "--", "1")
    assert p.returncode == INFRA and "checksum mismatch" in p.stderr, p.stderr
    assert not (cache / base.env_key).exists() and not list(cache.glob(".tmp.*"))
    # and the right one still works afterwards
    p = run(base.launcher, cache, "--archive", str(base.archive), "--", "1")
    assert p.returncode == 0, p.stderr


def test_refusal_writes_an_infrastructure_report(base: DevPack, tmp_path: Path) -> None:
    launcher = hostile_pack(base, tmp_path / "dist", tmp_path, [_file("/abs-pwned")])
    rep = tmp_path / "r.json"
    p = run(launcher, tmp_path / "cache", "--report", str(rep), "--", "1")
    assert p.returncode == INFRA
    r: dict[str, Any] = json.loads(rep.read_text())
    assert r["status"] == "infrastructure" and r["error"]["type"] == "UnsafeArchive"
    assert not Path("/abs-pwned").exists()


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_member_check_passes_clean_packs_of_every_compression(
    tmp_path: Path, compression: str
) -> None:
    pk = build_dev_pack(
        tmp_path / "dist",
        name="hz",
        python=PYTHON,
        app_files={"job.py": JOB},
        targets=[TARGET],
        compression=compression,  # type: ignore[arg-type]
    )
    p = run(pk.launcher, tmp_path / "cache", "--", "5")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1]) == 5
