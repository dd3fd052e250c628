#!/usr/bin/env bash
# Install a single-node Slurm (Debian's slurm-wlm pieces + munge) so tests/slurm.py can start it.
#
# Why a script: CI runs on a fresh machine where nothing installed by hand survives; the tests'
# fixture (tests/slurm.py) starts and stops the daemons itself, this only installs binaries.
# Idempotent: does nothing when the binaries are already there. Never fails the CI run: without
# Slurm the Slurm tests skip with a reason, the rest of the suite still runs.
set -u

need=0
for bin in slurmctld slurmd sbatch sinfo munged; do
    if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
        need=1
    fi
done
if [ "$need" = 0 ]; then
    echo "slurm-setup: slurm and munge already installed"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "slurm-setup: not root, cannot install slurm (the Slurm tests will skip)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >/tmp/slurm-setup.log 2>&1; then
    apt-get update >>/tmp/slurm-setup.log 2>&1 || true
    if ! apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge >>/tmp/slurm-setup.log 2>&1; then
        echo "slurm-setup: apt-get install failed (see /tmp/slurm-setup.log); the Slurm tests will skip" >&2
        tail -n 5 /tmp/slurm-setup.log >&2
        exit 0
    fi
fi
echo "slurm-setup: installed $(dpkg-query -W -f='${Version}' slurmctld 2>/dev/null) slurm + munge"
