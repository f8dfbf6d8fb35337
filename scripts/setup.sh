#!/usr/bin/env bash
# Prepares a Debian 12 machine to run the sandbox platform, idempotently: what the quick start
# needs, nothing for the tests (scripts/test-tools.sh installs those; scripts/test.sh runs it).
#   1. checks for a Rust toolchain of at least the workspace's rust-version (rustup installs one),
#   2. Debian packages: docker.io, bubblewrap, mmdebstrap, python3, curl, ca-certificates,
#   3. dockerd (no default bridge, no iptables: sandboxes get no network),
#   4. the sandbox template images (images/build.sh).
# Run as root. Re-running only does what is missing.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh services   only make sure dockerd runs
#   scripts/setup.sh images     dockerd and the images
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
what="${1:-all}"

say() { printf '[setup] %s\n' "$*"; }

require_root scripts/setup.sh "it installs packages and starts dockerd"
require_rust
mkdir -p "$log_dir"
if [ "$what" = all ]; then
  ensure_packages docker.io bubblewrap mmdebstrap ca-certificates python3 curl
fi

if ! docker info >/dev/null 2>&1; then
  # A dockerd that was killed leaves its and its containerd's pid files behind, and a new one
  # then refuses to start or waits for a containerd that is gone. A file is stale unless its
  # process runs (a killed one may linger a moment as a zombie).
  for pid_file in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    old_pid=$(cat "$pid_file" 2>/dev/null || true)
    if [ -n "$old_pid" ] && ! grep -qs '^State:[[:space:]]*[RSD]' "/proc/$old_pid/status"; then
      rm -f "$pid_file"
    fi
  done
  say "starting dockerd (no default bridge, no iptables; log: $log_dir/dockerd.log)"
  # The daemon must outlive this script; setsid detaches it from our session.
  setsid dockerd --bridge=none --iptables=false >"$log_dir/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $log_dir/dockerd.log" >&2; exit 1; }
fi

if [ "$what" = all ] || [ "$what" = images ]; then
  images/build.sh
fi
say "ready"
