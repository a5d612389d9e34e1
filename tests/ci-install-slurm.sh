#!/bin/sh
# Packages for tests/slurm.rs (a real two-node Slurm on 127.0.0.1), for .ci/run.
# The daemons are started by the test itself, never by the package scripts.
set -eu
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    slurmctld slurmd slurm-client munge
