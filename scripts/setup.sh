#!/usr/bin/env bash
# Prepares a Debian 12 machine for the sandbox platform, idempotently, once it has found a Rust
# toolchain of at least the workspace's rust-version (it stops, saying how to get one, otherwise):
#   1. Debian packages (docker.io, bubblewrap, mmdebstrap, mariadb-server, ...), cargo-nextest,
#      and the Python test tools (schemathesis, kubernetes-validate, helm-python-sdk) in a
#      virtualenv,
#   2. services: dockerd (no default bridge, no iptables: sandboxes get no network) and
#      MariaDB on 127.0.0.1 (scripts/mariadb.sh),
#   3. the sandbox template images (images/build.sh).
# Run as root. Re-running only does what is missing.
#
#   scripts/setup.sh            everything
#   scripts/setup.sh services   only make sure the services run
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
what="${1:-all}"
TOOLS_VENV="${TOOLS_VENV:-/var/cache/sandbox-tools/venv}"
SCHEMATHESIS_VERSION=4.32.5
KUBERNETES_VALIDATE_VERSION=1.37.0
HELM_PYTHON_SDK_VERSION=0.2.2
log_dir=/var/log/sandbox
mkdir -p "$log_dir"

say() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "scripts/setup.sh must run as root (it installs packages and starts dockerd)" >&2
  exit 1
fi
require_rust

packages=(docker.io bubblewrap mmdebstrap mariadb-server ca-certificates python3 python3-venv curl)
if [ "$what" = all ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log_dir/apt.log"
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest"
    cargo install --locked --quiet cargo-nextest
  fi
  if ! "$TOOLS_VENV/bin/python" -c 'import schemathesis, kubernetes_validate, helm_python' 2>/dev/null; then
    say "installing schemathesis, kubernetes-validate and helm-python-sdk into $TOOLS_VENV"
    [ -x "$TOOLS_VENV/bin/pip" ] || python3 -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "helm-python-sdk==$HELM_PYTHON_SDK_VERSION"
  fi
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

scripts/mariadb.sh

if [ "$what" = all ] || [ "$what" = images ]; then
  images/build.sh
fi
say "ready"
