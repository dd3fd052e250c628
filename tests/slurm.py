"""A real single-node Slurm cluster for tests (design notes §5), as a session-scoped fixture,
and a real pack (`job_pack`) for the batch-scheduler tests to run.

Use it from a test module with `from slurm import slurm_cluster  # noqa: F401` and a parameter
named `slurm_cluster`. The fixture installs Debian's slurm-wlm + munge when they are missing
(.ci/slurm-setup.sh), starts a private munged (own socket), slurmctld and `slurmd -N localhost`
from a private config in a temp dir (free ports), waits for the node to be idle, and stops the
daemons it started by their PID files at the end of the session. Nothing is shared with the
system's or another session's Slurm, so pytest-xdist workers may each start one. It skips, with the reason,
only when the binaries cannot be installed or the daemons cannot be started here (not root).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / ".ci" / "slurm-setup.sh"
SBIN = Path("/usr/sbin")


@dataclass(frozen=True)
class SlurmCluster:
    """A running cluster: its config, work dir, and the environment clients need."""

    conf: Path
    root: Path
    cpus: int
    memory_mib: int

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text().splitlines()[-lines:]))
        return "\n".join(out)


def _have_binaries() -> bool:
    return all(
        shutil.which(b) or (SBIN / b).exists()
        for b in ("slurmctld", "slurmd", "sbatch", "sinfo", "munged")
    )


def ensure_installed() -> str | None:
    """None when Slurm and munge are installed (installing them if needed), else why not."""
    if _have_binaries():
        return None
    if os.geteuid() != 0:
        return "slurm/munge are not installed and installing them needs root"
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, check=False)
    if not _have_binaries():
        return "could not install slurm-wlm/munge from Debian: " + (
            proc.stderr.strip() or proc.stdout.strip() or "no output"
        )
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _munge_works(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    sock = f"--socket={socket_path}"
    enc = subprocess.run(["munge", sock, "-n"], capture_output=True, check=False)
    if enc.returncode != 0:
        return False
    dec = subprocess.run(["unmunge", sock], input=enc.stdout, capture_output=True, check=False)
    return dec.returncode == 0


def start_munge(root: Path) -> Path:
    """Start a private munged (own socket, PID file and log under `root`); return its PID file.

    A private daemon, not the system one: parallel test workers and other sessions' clusters
    each keep their own, so stopping ours never breaks theirs.
    """
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run([str(SBIN / "mungekey"), "--create", "--keyfile", str(key)], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    mdir = root / "munge"
    subprocess.run(
        ["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", str(mdir)], check=True
    )
    pidfile = mdir / "munged.pid"
    subprocess.run(
        [
            "runuser",
            "-u",
            "munge",
            "--",
            str(SBIN / "munged"),
            f"--socket={mdir / 'munge.socket'}",
            f"--pid-file={pidfile}",
            f"--log-file={mdir / 'munged.log'}",
            f"--seed-file={mdir / 'munged.seed'}",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _munge_works(mdir / "munge.socket"):
            return pidfile
        time.sleep(0.1)
    raise RuntimeError("munged did not come up: " + (mdir / "munged.log").read_text()[-500:])


def _memory_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 2048


def write_conf(root: Path, cpus: int, memory_mib: int) -> Path:
    """A slurm.conf for one node named localhost, every path inside `root`."""
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=lfmtest
SlurmctldHost=localhost
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
EnforcePartLimits=ALL
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/jobcomp.txt
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost CPUs={cpus} RealMemory={memory_mib} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    )
    (root / "state").mkdir(exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    return conf


def _stop_pidfile(pidfile: Path, timeout: float = 10) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start(root: Path) -> SlurmCluster:
    """Start slurmctld and slurmd; return once the node reports idle (or raise)."""
    cpus = os.cpu_count() or 1
    memory = max(1024, int(_memory_mib() * 0.8))
    conf = write_conf(root, cpus, memory)
    cluster = SlurmCluster(conf=conf, root=root, cpus=cpus, memory_mib=memory)
    env = cluster.env
    subprocess.run([str(SBIN / "slurmctld"), "-f", str(conf)], env=env, check=True)
    subprocess.run([str(SBIN / "slurmd"), "-f", str(conf), "-N", "localhost"], env=env, check=True)
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        proc = cluster.run("sinfo", "-h", "-N", "-o", "%t", timeout=10)
        state = proc.stdout.strip()
        if state.startswith("idle"):
            return cluster
        time.sleep(0.3)
    stop(cluster)
    raise RuntimeError(f"slurm node not idle after 60 s (state {state!r})\n{cluster.log_tail()}")


def stop(cluster: SlurmCluster) -> None:
    """Stop the daemons by their PID files (never by name)."""
    _stop_pidfile(cluster.root / "slurmd.pid")
    _stop_pidfile(cluster.root / "slurmctld.pid")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running single-node Slurm; skipped with a reason when it cannot exist here."""
    reason = ensure_installed()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    root = Path(tempfile.mkdtemp(prefix="lfm-slurm-"))
    root.chmod(0o755)
    munge_pid = start_munge(root)
    try:
        cluster = start(root)
    except BaseException:
        _stop_pidfile(munge_pid)
        raise
    try:
        yield cluster
    finally:
        stop(cluster)
        _stop_pidfile(munge_pid)
        shutil.rmtree(root, ignore_errors=True)


JOB_PY = '''"""The job the batch-scheduler tests pack and run: stdlib only, so it packs from any venv."""
import os


def simulate(x, scale=2):
    """Scale x, in this process (the pid shows which process ran it)."""
    return {"value": x * scale, "pid": os.getpid()}
'''


@dataclass(frozen=True)
class JobPack:
    """A real pack of job.py:simulate built by `lfm-pack pack` (launcher + archive + lock)."""

    dist: Path
    launcher: Path
    archive: Path
    env_key: str

    def copy_to(self, directory: Path) -> Path:
        """A private copy of the pack's directory (tests may move or delete it)."""
        shutil.copytree(self.dist, directory)
        return directory


def build_job_pack(root: Path) -> JobPack:
    """Pack JOB_PY's `simulate` with the real tool, in the test interpreter's own environment.

    `--no-verify`: the hidden-prefix verification is covered by test_pack_roundtrip.py; here the
    pack only has to be real for the launcher, its cache and its reports to be exercised.
    """
    src = root / "src"
    src.mkdir(parents=True)
    (src / "job.py").write_text(JOB_PY)
    dist = root / "dist"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lfm_pack",
            "pack",
            "job.py:simulate",
            "-o",
            str(dist),
            "--python",
            sys.executable,
            "--no-verify",
            "--json",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"lfm-pack pack failed ({proc.returncode}): {proc.stderr[-2000:]}")
    info = json.loads(proc.stdout)
    return JobPack(
        dist=dist,
        launcher=dist / "simulate-run",
        archive=Path(info["archive"]),
        env_key=str(info["env_key"]),
    )


@pytest.fixture(scope="session")
def job_pack(tmp_path_factory: pytest.TempPathFactory) -> JobPack:
    """Built once per test session (per xdist worker)."""
    return build_job_pack(tmp_path_factory.mktemp("job-pack"))
