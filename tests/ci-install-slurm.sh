#!/bin/sh
# Packages for tests/slurm.rs (a real two-node Slurm on 127.0.0.1), for
# tests/run-all.sh. The daemons are started by the test itself, never by the
# package scripts.
set -eu
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v sbatch >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge
fi
