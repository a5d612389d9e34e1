#!/usr/bin/env bash
# Installs what the VM test suite (tests/vm.rs) needs on a fresh Debian 12
# machine: qemu, a static busybox, Debian's stock kernel (unpacked under
# target/vm/kernel, never installed into /boot), the musl target that the
# static packrun is built for and musl-gcc (the zstd crate compiles C for that
# target). Run as root (from anywhere). Idempotent: a
# second run downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."

export DEBIAN_FRONTEND=noninteractive
if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends qemu-system-x86 busybox-static xz-utils musl-tools >/dev/null

# The real package behind the linux-image-amd64 meta package (its version
# changes with Debian point releases, so it is resolved, not hard-coded).
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
  echo "ci-install: cannot resolve the kernel package behind linux-image-amd64" >&2
  exit 1
fi
dest=target/vm/kernel/$pkg
if [ ! -d "$dest/boot" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq "$pkg")
  mkdir -p "$dest.partial"
  dpkg-deb -x "$tmp"/*.deb "$dest.partial"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  # Keep only this kernel, so the harness never boots an older one.
  find target/vm/kernel -mindepth 1 -maxdepth 1 ! -name "$pkg" -exec rm -rf {} +
fi
echo "ci-install: kernel $(ls "$dest"/boot/vmlinuz-*)"

rustup target add x86_64-unknown-linux-musl
