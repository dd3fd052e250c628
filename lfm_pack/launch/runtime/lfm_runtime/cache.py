"""Node cache housekeeping: least-recently-used eviction that never removes an env in use.

Layout under the cache dir: `<env_key>/` (complete envs, each with `.lfm/complete` holding its
size), `.<env_key>.lock` (held exclusively while extracting) and `.<env_key>.use` (held *shared*
by every launcher running from that env, for the whole run). Evicting takes both locks
non-blocking, so an env that is being extracted or used is skipped, then renames the dir to
`.trash.*` (atomic: no run can see a half-deleted env) and removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    pass


def _size_of(env_dir: str) -> int:
    try:
        with open(os.path.join(env_dir, ".lfm", "complete")) as fh:
            for line in fh:
                if line.startswith("size_bytes="):
                    return int(line.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    total = 0
    for root, _dirs, files in os.walk(env_dir):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def _last_used(cache_dir: str, key: str) -> float:
    for name in (f".{key}.use", os.path.join(key, ".lfm", "complete")):
        try:
            return os.stat(os.path.join(cache_dir, name)).st_mtime
        except OSError:
            continue
    return 0.0


def complete_envs(cache_dir: str) -> list[tuple[str, int, float]]:
    """(key, size, last_used) of every complete env in the cache."""
    out = []
    for name in os.listdir(cache_dir):
        if name.startswith("."):
            continue
        d = os.path.join(cache_dir, name)
        if os.path.isfile(os.path.join(d, ".lfm", "complete")):
            out.append((name, _size_of(d), _last_used(cache_dir, name)))
    return out


def _try_lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def evict(cache_dir: str, max_size: int, keep: str) -> dict[str, object]:
    """Remove least-recently-used envs until the cache holds at most `max_size` bytes."""
    envs = sorted(complete_envs(cache_dir), key=lambda e: e[2])
    total = sum(e[1] for e in envs)
    removed: list[str] = []
    busy: list[str] = []
    for key, size, _used in envs:
        if total <= max_size:
            break
        if key == keep:
            continue
        use_fd = _try_lock(os.path.join(cache_dir, f".{key}.use"))
        if use_fd < 0:
            busy.append(key)
            continue
        ext_fd = _try_lock(os.path.join(cache_dir, f".{key}.lock"))
        if ext_fd < 0:
            os.close(use_fd)
            busy.append(key)
            continue
        try:
            trash = os.path.join(cache_dir, ".trash.%s.%d" % (key, os.getpid()))
            os.rename(os.path.join(cache_dir, key), trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(key)
            total -= size
        finally:
            os.close(ext_fd)
            os.close(use_fd)
    return {"removed": removed, "busy": busy, "size_bytes": total, "max_size_bytes": max_size}
