"""Read the monitored process tree from /proc, cheaply enough to sample every 50 ms.

One read of /proc/<pid>/stat per process gives parent, CPU ticks (own + waited children),
virtual size and resident pages. The tree is walked from the monitor (a child subreaper, so
every descendant, orphans included, stays below it) through /proc/<pid>/task/<tid>/children;
kernels built without CONFIG_PROC_CHILDREN (e.g. some VMs) fall back to scanning /proc, skipping
pids already known to belong to someone else so a tick reads only new and own processes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    pass

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = float(os.sysconf("SC_CLK_TCK"))


class ProcStat:
    """The fields of /proc/<pid>/stat the monitor needs."""

    __slots__ = ("cpu_s", "pid", "ppid", "rss", "state", "vsize")

    def __init__(self, pid: int, ppid: int, state: str, cpu_s: float, vsize: int, rss: int) -> None:
        self.pid = pid
        self.ppid = ppid
        self.state = state
        self.cpu_s = cpu_s  # utime + stime + cutime + cstime (children it has waited for)
        self.vsize = vsize  # bytes
        self.rss = rss  # bytes


def read_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the *last* ')'.
    end = data.rfind(b")")
    fields = data[end + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            ppid=int(fields[1]),
            state=fields[0].decode(),
            cpu_s=(int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK,
            vsize=int(fields[20]),
            rss=int(fields[21]) * PAGE,
        )
    except (IndexError, ValueError):
        return None


def has_children_files() -> bool:
    """True when the kernel offers /proc/<pid>/task/<tid>/children (CONFIG_PROC_CHILDREN)."""
    pid = os.getpid()
    return os.path.exists("/proc/%d/task/%d/children" % (pid, pid))


class TreeWalker:
    """Lists the descendants of `root` (excluding root) with their stats, one tick at a time."""

    def __init__(self, root: int, use_children_files: bool | None = None) -> None:
        self.root = root
        self.use_children = (
            has_children_files() if use_children_files is None else use_children_files
        )
        self._foreign: set[int] = set()  # scan mode: pids seen not to be ours
        self.method = "proc-children" if self.use_children else "proc-scan"

    def walk(self) -> dict[int, ProcStat]:
        """Map pid -> stat of every live (or zombie) descendant of root."""
        if self.use_children:
            return self._walk_children()
        return self._walk_scan()

    def _children_of(self, pid: int) -> list[int]:
        out: list[int] = []
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return out
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as fh:
                    out.extend(int(x) for x in fh.read().split())
            except OSError:
                continue
        return out

    def _walk_children(self) -> dict[int, ProcStat]:
        found: dict[int, ProcStat] = {}
        stack = self._children_of(self.root)
        while stack:
            pid = stack.pop()
            if pid in found:
                continue
            st = read_stat(pid)
            if st is None:
                continue
            found[pid] = st
            stack.extend(self._children_of(pid))
        return found

    def _walk_scan(self) -> dict[int, ProcStat]:
        stats: dict[int, ProcStat] = {}
        live: set[int] = set()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            live.add(pid)
            if pid in self._foreign or pid == self.root:
                continue
            st = read_stat(pid)
            if st is not None:
                stats[pid] = st
        self._foreign &= live  # forget exited pids so a reused pid is looked at again
        # Keep the descendants of root; everything else is foreign for good (a process that is
        # not below a subreaper never moves below it).
        ours: dict[int, ProcStat] = {}
        children: dict[int, list[int]] = {}
        for st in stats.values():
            children.setdefault(st.ppid, []).append(st.pid)
        stack = list(children.get(self.root, ()))
        while stack:
            pid = stack.pop()
            if pid in ours:
                continue
            ours[pid] = stats[pid]
            stack.extend(children.get(pid, ()))
        # A pid whose parent vanished between listdir and its stat read may be ours after all
        # (about to be re-parented to root): only a visible, foreign parent makes it foreign.
        newly = [
            pid
            for pid, st in stats.items()
            if pid not in ours and (st.ppid in stats or st.ppid in self._foreign or st.ppid == 0)
        ]
        self._foreign.update(newly)
        return ours


def vmstat_oom_kills() -> int | None:
    """The node-wide count of kernel OOM kills (/proc/vmstat oom_kill, Linux >= 4.13)."""
    try:
        with open("/proc/vmstat", "rb") as fh:
            for line in fh:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_pids(walker: TreeWalker) -> tuple[int, ...]:
    """Convenience: the pids of the current tree."""
    return tuple(walker.walk())
