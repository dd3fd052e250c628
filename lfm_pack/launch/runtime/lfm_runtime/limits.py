"""Resource limits: what was asked for, and how this node can enforce it.

Preference order: a cgroup v2 child group (kernel-enforced `memory.max`/`cpu.max`, exact
`memory.peak`, `memory.events` oom_kill) when the unified hierarchy is delegated and writable;
otherwise the monitor's watchdog (sample, then kill the whole tree) plus `sched_setaffinity` for
cores. `RLIMIT_AS` is never used: it counts reserved address space and breaks CUDA and jemalloc.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    pass


class Limits:
    """Limits requested on the command line (None = unlimited)."""

    __slots__ = ("cores", "disk", "memory", "wall_time")

    def __init__(
        self,
        memory: int | None = None,
        wall_time: float | None = None,
        disk: int | None = None,
        cores: int | None = None,
    ) -> None:
        self.memory = memory  # bytes, whole tree
        self.wall_time = wall_time  # seconds
        self.disk = disk  # bytes added to the working directory
        self.cores = cores

    def as_dict(self) -> dict[str, object]:
        return {
            "memory_bytes": self.memory,
            "wall_time_s": self.wall_time,
            "disk_bytes": self.disk,
            "cores": self.cores,
        }


def own_cgroup_v2_dir() -> str | None:
    """The directory of this process's cgroup in a pure v2 (unified) hierarchy, if any."""
    try:
        with open("/proc/self/cgroup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    if len(lines) != 1 or not lines[0].startswith("0::"):
        return None  # v1 or hybrid: controllers live in v1, v2 has none we can use
    path = "/sys/fs/cgroup" + lines[0][3:].rstrip("/")
    return path if os.path.isfile(os.path.join(path, "cgroup.controllers")) else None


class Cgroup:
    """A cgroup v2 leaf created for one task; the child moves itself in before running."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.path, name)) as fh:
                return fh.read()
        except OSError:
            return None

    def add_self(self) -> None:
        with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))

    def memory_peak(self) -> int | None:
        text = self._read("memory.peak")
        return int(text) if text and text.strip().isdigit() else None

    def oom_kills(self) -> int:
        text = self._read("memory.events") or ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def setup_cgroup(limits: Limits, tag: str) -> Cgroup | None:
    """Create a cgroup v2 leaf with memory.max/cpu.max when delegated; None otherwise.

    The parent's `cgroup.subtree_control` must already offer the controllers (a delegated
    subtree, e.g. systemd `Delegate=yes` or a scheduler's job cgroup); lfm never enables
    controllers itself, so on a node without delegation this quietly returns None and the
    watchdog enforces the limits instead.
    """
    if limits.memory is None and limits.cores is None:
        return None
    base = own_cgroup_v2_dir()
    if base is None or not os.access(base, os.W_OK):
        return None
    try:
        with open(os.path.join(base, "cgroup.subtree_control")) as fh:
            enabled = fh.read().split()
    except OSError:
        return None
    needed: list[str] = []
    if limits.memory is not None:
        needed.append("memory")
    if limits.cores is not None:
        needed.append("cpu")
    if not all(c in enabled for c in needed):
        return None
    path = os.path.join(base, "lfm-" + tag)
    try:
        os.mkdir(path)
        if limits.memory is not None:
            with open(os.path.join(path, "memory.max"), "w") as fh:
                fh.write(str(limits.memory))
            try:
                with open(os.path.join(path, "memory.swap.max"), "w") as fh:
                    fh.write("0")
            except OSError:
                pass
        if limits.cores is not None:
            with open(os.path.join(path, "cpu.max"), "w") as fh:
                fh.write("%d 100000" % (limits.cores * 100000))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    return Cgroup(path)


def restrict_cores(cores: int, offset: int = 0) -> list[int]:
    """Pin the calling process (and its future children) to `cores` of its allowed CPUs.

    `offset` rotates the choice, so concurrent warm-mode calls in different slots get
    different CPUs instead of all sharing the first ones.
    """
    allowed = sorted(os.sched_getaffinity(0))
    n = max(1, min(cores, len(allowed)))
    start = (offset * n) % len(allowed)
    chosen = sorted((allowed + allowed)[start : start + n])
    os.sched_setaffinity(0, chosen)
    return chosen
