#!/usr/bin/env bash
# Runs every test, the ignored ones too, after installing what they need.
# The one test command of README.md, and what .ci/run runs.
#
# As root on Debian 12 (apt): installs the packages the tests use (a C
# compiler and python3 for the test programs and probes run inside containers,
# Chromium, Slurm and munge, umoci and skopeo, qemu with busybox, a Debian
# kernel and the musl target for the VM suite), each only when missing, then
# runs `cargo test --no-fail-fast -- --include-ignored`, so one failing test
# binary does not hide the others. A test whose tool is missing fails naming
# it; none passes without having run.
#
# Arguments go to `cargo test` before `--`: `tests/run-all.sh --test vm`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "tests/run-all.sh: needs root, to install packages and for the tests that make" >&2
  echo "cgroups and namespaces. As any user, \`cargo test\` runs the others and lists" >&2
  echo "these as ignored, with the reason." >&2
  exit 1
fi

if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt or dpkg (an unattended upgrade) instead of failing.
  apt_conf=$(mktemp)
  trap 'rm -f "$apt_conf"' EXIT
  echo 'DPkg::Lock::Timeout "600";' >"$apt_conf"
  export APT_CONFIG="$apt_conf"
  # Tools the privileged tests run inside containers: a C compiler for the
  # burn and alloc programs, python3 for the seccomp probes and the services'
  # web server, bash, coreutils; redis-server and redis-tools for the
  # example jobs/redis-bench.yaml.
  missing=()
  for p in gcc libc6-dev python3 bash coreutils procps util-linux iproute2 gzip dash redis-server redis-tools; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  sh tests/ci-install-ux.sh          # headless Chromium for the report page tests
  sh tests/ci-install-slurm.sh       # slurmctld, slurmd and munge for the two-node cluster tests
  sh tests/ci-install-images.sh      # umoci and skopeo for the image tests that unpack what other tools wrote
  bash tests/vm/ci-install.sh        # qemu, busybox and a kernel for the cgroup v2 / NUMA VM suite
else
  echo "tests/run-all.sh: no apt-get here; installing nothing (the tests name what they miss)" >&2
fi

cargo test --no-fail-fast "$@" -- --include-ignored
