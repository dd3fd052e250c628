"""The lightweight function monitor: supervise one process tree, measure it, enforce limits.

Design (why it looks like this):
- The monitor becomes a *child subreaper* (prctl), so every descendant, including daemonized
  orphans, is re-parented to it and reaped here with wait4; getrusage(RUSAGE_CHILDREN) then
  gives exact totals of CPU, per-process max RSS and block I/O for the whole tree.
- The tree's summed RSS (which wait4 cannot give) comes from sampling /proc every `interval`
  (50 ms by default: a 200 ms spike is seen ~4 times; 1 Hz sampling misses up to half of it).
- It is single-threaded: the target is forked *before* any handler is installed, and the loop
  sleeps in select() on a signal wakeup fd and the runner's event pipe, so a child's exit or a
  SIGTERM is handled at once instead of at the next tick.
- Limits fire in the watchdog (kill the whole tree: SIGSTOP sweep so a fork loop cannot outrun
  it, then SIGKILL) unless a delegated cgroup v2 lets the kernel enforce them.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import select
import signal
import time

from . import procfs
from .limits import Cgroup, Limits, restrict_cores, setup_cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms of start-up on every run
    from typing import Any


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEFAULT_INTERVAL = 0.05
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
TERMINATING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


_LIBC: list[Any] = []


def _prctl(option: int, arg: int) -> bool:
    """prctl(2) through ctypes; False when unavailable (non-glibc, seccomp).

    The libc handle is kept: a warm server's call monitors call this twice per call.
    """
    try:
        if not _LIBC:
            import ctypes

            _LIBC.append(ctypes.CDLL(None, use_errno=True))
        return bool(_LIBC[0].prctl(option, arg, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Series:
    """A time series that keeps at most `capacity` points by merging neighbours (max memory).

    Memory stays bounded for a day-long task while the shape (and the peaks, since buckets keep
    their maximum) survives; `stride` samples make one point.
    """

    def __init__(self, capacity: int = 400) -> None:
        self.capacity = capacity
        self.stride = 1
        self.points: list[list[float]] = []  # [t, memory, cores, processes]
        self._pending = 0

    def add(self, t: float, memory: float, cores: float, procs: float) -> None:
        if self._pending and self.points:
            last = self.points[-1]
            last[1] = max(last[1], memory)
            last[2] = max(last[2], cores)
            last[3] = max(last[3], procs)
            self._pending += 1
        else:
            self.points.append([t, memory, cores, procs])
            self._pending = 1
        if self._pending >= self.stride:
            self._pending = 0
        if len(self.points) >= self.capacity and self._pending == 0:
            merged = []
            for i in range(0, len(self.points) - 1, 2):
                a, b = self.points[i], self.points[i + 1]
                merged.append([a[0], max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
            if len(self.points) % 2:
                merged.append(self.points[-1])
            self.points = merged
            self.stride *= 2

    def as_dict(self, interval: float) -> dict[str, Any]:
        return {
            "interval_s": round(interval * self.stride, 4),
            "t_s": [round(p[0], 3) for p in self.points],
            "memory_bytes": [int(p[1]) for p in self.points],
            "cores": [round(p[2], 2) for p in self.points],
            "processes": [int(p[3]) for p in self.points],
        }


def dir_usage(path: str, cap: int = 200000) -> tuple[int, bool]:
    """Bytes allocated under `path` (st_blocks, no symlink following); (bytes, complete)."""
    total = 0
    seen = 0
    stack = [path]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                seen += 1
                if seen > cap:
                    return total, False
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total, True


class Monitor:
    """Fork the target, then supervise and measure it until every descendant is gone."""

    def __init__(
        self,
        limits: Limits | None = None,
        interval: float = DEFAULT_INTERVAL,
        workdir: str | None = None,
        kill_grace: float = 5.0,
        measure_disk: bool | None = None,
        use_children_files: bool | None = None,
        cpu_offset: int = 0,
    ) -> None:
        self.cpu_offset = cpu_offset  # warm mode: slot k pins --cores to the k-th CPU block
        self.limits = limits if limits is not None else Limits()
        self.interval = interval
        self.workdir = workdir or os.getcwd()
        self.kill_grace = kill_grace
        self.measure_disk = measure_disk
        self.use_children_files = use_children_files
        self.pid = 0
        self.events_fd = -1
        self._events_r = -1
        self.cgroup: Cgroup | None = None
        self.subreaper = False
        self.cores_pinned: list[int] | None = None
        self.t_fork = 0.0

    # ---------------------------------------------------------------- child side
    def fork(self) -> bool:
        """Fork the task process. Returns True in the child (which must then run the task and
        exit), False in the monitor. `events_fd` in the child is the runner's event pipe."""
        self.subreaper = _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self._events_r, w = os.pipe()
        self.cgroup = setup_cgroup(self.limits, "%d-%d" % (os.getpid(), int(time.time())))
        self.oom_before = procfs.vmstat_oom_kills()
        self.t_fork = time.monotonic()
        self.t_fork_wall = time.time()
        pid = os.fork()
        if pid == 0:
            os.close(self._events_r)
            self.events_fd = w
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if self.cgroup is not None:
                with contextlib.suppress(OSError):
                    self.cgroup.add_self()
            if self.limits.cores is not None:
                with contextlib.suppress(OSError):
                    restrict_cores(self.limits.cores, self.cpu_offset)
            return True
        os.close(w)
        self.pid = pid
        return False

    # ---------------------------------------------------------------- monitor side
    def supervise(self) -> dict[str, Any]:
        """Run the watch loop until the task and all its descendants are gone; the result."""
        st = _State(self)
        return st.run()


class _State:
    """All mutable bookkeeping of one supervision (kept off Monitor so it stays a config)."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon
        self.limits = mon.limits
        self.walker = procfs.TreeWalker(os.getpid(), mon.use_children_files)
        self.start = mon.t_fork
        self.events: dict[str, Any] = {}
        self.events_buf = b""
        self.events_open = True
        self.main_status: int | None = None
        self.main_end: float | None = None
        self.no_children = False
        self.reaped = 0
        self.seen: set[int] = set()
        self.series = Series()
        self.samples = 0
        self.sample_cost = 0.0
        self.mem_peak = 0
        self.mem_peak_t = 0.0
        self.vm_peak = 0
        self.vm_peak_t = 0.0
        self.procs_peak = 0
        self.procs_peak_t = 0.0
        self.cores_peak = 0.0
        self.cores_peak_t = 0.0
        self.cpu_window: list[tuple[float, float]] = []
        self.window = max(0.5, 5 * mon.interval)
        self.disk_base: int | None = None
        self.disk_peak = 0
        self.disk_peak_t = 0.0
        self.disk_complete = True
        self.disk_next = 0.0
        self.limit_fired: dict[str, Any] | None = None
        self.signals: list[int] = []
        self.signal_received: int | None = None
        self.killing = False
        self.escalate_at: float | None = None
        self.hard_killed = False
        self.killed_by_monitor: set[int] = set()
        self.leftovers = 0
        self.ru_user = 0.0
        self.ru_sys = 0.0
        self.ru_inblock = 0
        self.ru_oublock = 0
        self.ru_maxrss = 0

    # signal plumbing ---------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)

    def _install(self) -> tuple[int, dict[int, Any]]:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        old: dict[int, Any] = {}
        for s in (*FORWARDED, signal.SIGCHLD):
            old[s] = signal.signal(s, self._on_signal)
        self._wake_w = w
        return r, old

    def _uninstall(self, r: int, old: dict[int, Any]) -> None:
        signal.set_wakeup_fd(-1)
        for s, h in old.items():
            signal.signal(s, h)
        os.close(r)
        os.close(self._wake_w)

    # main loop ---------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        wake_r, old = self._install()
        os.set_blocking(self.mon._events_r, False)
        measure_disk = self.mon.measure_disk
        if measure_disk is None:
            measure_disk = self.limits.disk is not None
        if measure_disk:
            self.disk_base, self.disk_complete = dir_usage(self.mon.workdir)
        next_tick = time.monotonic()
        try:
            while True:
                self._read_events()
                self._handle_signals()
                self._reap()
                if self.main_status is not None and self.no_children:
                    break
                now = time.monotonic()
                if now >= next_tick:
                    self._sample(now)
                    if measure_disk and now >= self.disk_next:
                        self._sample_disk(now)
                    self._check_limits(now)
                    next_tick = max(next_tick + self.mon.interval, now + self.mon.interval / 4)
                if self.killing and self.escalate_at is not None and now >= self.escalate_at:
                    self._hard_kill()
                if self.main_status is not None and not self.killing and not self.no_children:
                    # The task is over; whatever it left running is ended like a batch job's.
                    self.leftovers = len(self.walker.walk())
                    self._start_kill(signal.SIGTERM, grace=1.0)
                fds = [wake_r]
                if self.events_open:
                    fds.append(self.mon._events_r)
                timeout = max(0.0, next_tick - time.monotonic())
                if self.killing and self.escalate_at is not None:
                    timeout = min(timeout, max(0.0, self.escalate_at - time.monotonic()))
                try:
                    ready, _, _ = select.select(fds, [], [], timeout)
                except InterruptedError:
                    ready = []
                if wake_r in ready:
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
        finally:
            self._uninstall(wake_r, old)
        self._read_events(final=True)
        return self._result()

    def _read_events(self, final: bool = False) -> None:
        if not self.events_open:
            return
        while True:
            try:
                chunk = os.read(self.mon._events_r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.events_open = False
                os.close(self.mon._events_r)
                break
            self.events_buf += chunk
        # frames: 4-byte big-endian length + marshal data (no json import in the monitor)
        buf = self.events_buf
        while len(buf) >= 4:
            size = int.from_bytes(buf[:4], "big")
            if len(buf) < 4 + size:
                break
            try:
                ev = marshal.loads(buf[4 : 4 + size])
            except (ValueError, EOFError, TypeError):
                ev = None
            buf = buf[4 + size :]
            if isinstance(ev, dict) and "ev" in ev:
                self.events[str(ev["ev"])] = ev
        self.events_buf = buf

    def _reap(self) -> None:
        while True:
            try:
                pid, status, _ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                self.no_children = True
                return
            except InterruptedError:
                continue
            if pid == 0:
                self.no_children = False
                return
            self.reaped += 1
            self.seen.add(pid)
            # wait4's rusage covers the process and every descendant it waited for itself;
            # orphans come to us, so summing over our reaps counts each process exactly once.
            # (RUSAGE_CHILDREN would also count what the launcher's shell ran before exec.)
            self.ru_user += _ru.ru_utime
            self.ru_sys += _ru.ru_stime
            self.ru_inblock += _ru.ru_inblock
            self.ru_oublock += _ru.ru_oublock
            self.ru_maxrss = max(self.ru_maxrss, _ru.ru_maxrss)
            if pid == self.mon.pid:
                self.main_status = status
                self.main_end = time.monotonic()

    def _handle_signals(self) -> None:
        while self.signals:
            sig = self.signals.pop(0)
            if sig in TERMINATING:
                if self.signal_received is not None or self.killing:
                    self._hard_kill()  # second request: do not wait any longer
                    continue
                self.signal_received = sig
                self._start_kill(sig, grace=self.mon.kill_grace)
            else:
                self._send_all(sig)

    # measurement ---------------------------------------------------------------
    def _sample(self, now: float) -> None:
        c0 = time.process_time()
        procs = self.walker.walk()
        rss = 0
        vm = 0
        live = 0
        cpu = 0.0
        for p in procs.values():
            cpu += p.cpu_s
            if p.state != "Z":
                rss += p.rss
                vm += p.vsize
                live += 1
        self.seen.update(procs)
        cpu += self.ru_user + self.ru_sys
        t = now - self.start
        if self.mon.cgroup is not None:
            peak = self.mon.cgroup.memory_peak()
            if peak is not None and peak > self.mem_peak:
                self.mem_peak, self.mem_peak_t = peak, t
        if rss > self.mem_peak:
            self.mem_peak, self.mem_peak_t = rss, t
        if vm > self.vm_peak:
            self.vm_peak, self.vm_peak_t = vm, t
        if live > self.procs_peak:
            self.procs_peak, self.procs_peak_t = live, t
        self.cpu_window.append((t, cpu))
        while len(self.cpu_window) > 2 and t - self.cpu_window[1][0] >= self.window:
            self.cpu_window.pop(0)
        cores = 0.0
        t0, c_0 = self.cpu_window[0]
        if t - t0 >= self.window * 0.9:
            cores = max(0.0, (cpu - c_0) / (t - t0))
            if cores > self.cores_peak:
                self.cores_peak, self.cores_peak_t = cores, t
        self.series.add(t, rss, cores, live)
        self.last_rss = rss
        self.samples += 1
        self.sample_cost += time.process_time() - c0

    def _sample_disk(self, now: float) -> None:
        used, complete = dir_usage(self.mon.workdir)
        self.disk_complete = self.disk_complete and complete
        if used > self.disk_peak:
            self.disk_peak, self.disk_peak_t = used, now - self.start
        self.disk_next = now + max(1.0, 20 * self.mon.interval)
        self.disk_now = used

    def _check_limits(self, now: float) -> None:
        if self.limit_fired is not None or self.main_status is not None:
            return
        lim = self.limits
        if lim.memory is not None and getattr(self, "last_rss", 0) > lim.memory:
            self._fire("memory", lim.memory, self.last_rss)
        elif lim.wall_time is not None and now - self.start > lim.wall_time:
            self._fire("wall_time", lim.wall_time, round(now - self.start, 3))
        elif (
            lim.disk is not None
            and self.disk_base is not None
            and getattr(self, "disk_now", 0) - self.disk_base > lim.disk
        ):
            self._fire("disk", lim.disk, self.disk_now - self.disk_base)

    # killing ---------------------------------------------------------------------
    def _fire(self, name: str, limit: float, observed: float) -> None:
        self.limit_fired = {
            "limit": name,
            "value": limit,
            "observed": observed,
            "at_s": round(time.monotonic() - self.start, 3),
        }
        if name == "wall_time":
            self._start_kill(signal.SIGTERM, grace=self.mon.kill_grace)
        else:
            self.killing = True  # memory/disk keep growing: no grace period
            self._hard_kill()

    def _send_all(self, sig: int) -> None:
        for pid in self.walker.walk():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)

    def _start_kill(self, sig: int, grace: float) -> None:
        self.killing = True
        self._send_all(sig)
        self.escalate_at = time.monotonic() + grace

    def _hard_kill(self) -> None:
        """SIGSTOP every descendant until the set stops growing, then SIGKILL them all.

        Stopping first means a process that keeps forking cannot create children faster than
        they are killed; re-parented orphans are found because they come to us (subreaper).
        """
        self.killing = True
        self.hard_killed = True
        self.escalate_at = time.monotonic() + 0.5  # re-sweep later for stragglers
        stopped: set[int] = set()
        for _ in range(100):
            new = [p for p in self.walker.walk() if p not in stopped]
            if not new:
                break
            for pid in new:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
        for pid in stopped | set(self.walker.walk()):
            try:
                os.kill(pid, signal.SIGKILL)
                self.killed_by_monitor.add(pid)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    # result ----------------------------------------------------------------------
    def _result(self) -> dict[str, Any]:
        end = time.monotonic()
        status = self.main_status if self.main_status is not None else 0
        exit_code: int | None = None
        term_signal: int | None = None
        if os.WIFEXITED(status):
            exit_code = os.WEXITSTATUS(status)
        elif os.WIFSIGNALED(status):
            term_signal = os.WTERMSIG(status)
        cg_ooms = self.mon.cgroup.oom_kills() if self.mon.cgroup is not None else 0
        oom_after = procfs.vmstat_oom_kills()
        oom_before = getattr(self.mon, "oom_before", None)
        node_ooms = (
            (oom_after - oom_before) if (oom_after is not None and oom_before is not None) else 0
        )
        if self.mon.cgroup is not None:
            self.mon.cgroup.remove()
        max_proc_rss = self.ru_maxrss * 1024
        wall = (self.main_end or end) - self.start
        cpu_user, cpu_sys = self.ru_user, self.ru_sys
        cores_avg = (cpu_user + cpu_sys) / wall if wall > 0 else 0.0
        if self.cores_peak == 0.0 or wall < self.window:
            # too short for a full window: the whole run is the only honest window
            self.cores_peak = max(self.cores_peak, cores_avg)
        mem_peak = max(self.mem_peak, max_proc_rss)
        mem_peak_t = self.mem_peak_t if self.mem_peak >= max_proc_rss else None
        resources: dict[str, Any] = {
            "wall_time_s": round(wall, 4),
            "cpu_time_s": round(cpu_user + cpu_sys, 4),
            "cpu_user_s": round(cpu_user, 4),
            "cpu_sys_s": round(cpu_sys, 4),
            "cores_peak": round(max(self.cores_peak, 0.0), 3),
            "cores_avg": round(cores_avg, 3),
            "memory_peak_bytes": int(mem_peak),
            "memory_peak_process_bytes": int(max_proc_rss),
            "memory_peak_sampled_bytes": int(self.mem_peak),
            "virtual_memory_peak_bytes": int(self.vm_peak),
            "bytes_read": int(self.ru_inblock * 512),
            "bytes_written": int(self.ru_oublock * 512),
            "max_concurrent_processes": int(self.procs_peak),
            "total_processes": int(max(len(self.seen), self.reaped)),
            "disk_peak_bytes": int(self.disk_peak) if self.disk_base is not None else None,
            "disk_added_peak_bytes": (
                int(max(0, self.disk_peak - self.disk_base)) if self.disk_base is not None else None
            ),
            "peak_times_s": {
                "memory": round(mem_peak_t, 3) if mem_peak_t is not None else None,
                "virtual_memory": round(self.vm_peak_t, 3),
                "cores": round(self.cores_peak_t, 3),
                "processes": round(self.procs_peak_t, 3),
                "disk": round(self.disk_peak_t, 3) if self.disk_base is not None else None,
            },
            "method": {
                "memory": "cgroup-v2 memory.peak + wait4"
                if self.mon.cgroup is not None
                else "sampled /proc summed RSS + wait4 per-process max RSS",
                "tree": self.walker.method,
                "subreaper": self.mon.subreaper,
                "interval_s": self.mon.interval,
                "samples": self.samples,
                "sampling_cpu_s": round(self.sample_cost, 4),
                "disk_complete": self.disk_complete if self.disk_base is not None else None,
            },
        }
        return {
            "main_pid": self.mon.pid,
            "exit_code": exit_code,
            "term_signal": term_signal,
            "core_dumped": bool(os.WIFSIGNALED(status) and os.WCOREDUMP(status)),
            "events": self.events,
            "resources": resources,
            "series": self.series.as_dict(self.mon.interval),
            "limit_fired": self.limit_fired,
            "signal_received": self.signal_received,
            "killed_by_monitor": self.mon.pid in self.killed_by_monitor,
            "hard_killed": self.hard_killed,
            "leftover_processes": self.leftovers,
            "oom_kills": {"cgroup": cg_ooms, "node": node_ooms},
            "enforcement": "cgroup-v2" if self.mon.cgroup is not None else "watchdog",
            "cores_pinned": self.mon.limits.cores,
        }


def run_command(argv: list[str], env: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    """Monitor `argv` (exec'd in the forked child); convenience for `--exec` and tests."""
    mon = Monitor(**kw)
    if mon.fork():
        try:
            os.execvpe(argv[0], argv, env if env is not None else dict(os.environ))
        except OSError as exc:
            os.write(2, (f"lfm: cannot run {argv[0]}: {exc.strerror}\n").encode())
            os._exit(127)
    return mon.supervise()
