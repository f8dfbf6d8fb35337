# shellcheck shell=bash
# Helpers of the machine-preparing scripts (setup.sh, test-tools.sh, mariadb.sh), sourced from
# the repository root (require_rust reads ./Cargo.toml). Each makes sure of one thing and is
# quick when it already holds.

# Where the Python test tools live (scripts/test-tools.sh installs them there).
TOOLS_VENV="${TOOLS_VENV:-/var/cache/sandbox-tools/venv}"
log_dir=/var/log/sandbox

# require_root SCRIPT WHY: stops unless running as root.
require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$1 must run as root ($2)" >&2
    exit 1
  fi
}

# version_at_least HAVE WANT: whether version HAVE is WANT or later (1.95.0 >= 1.95).
version_at_least() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# require_rust: stops, saying how to get one, unless cargo and a rustc of at least the
# workspace's rust-version (Cargo.toml) are on PATH.
require_rust() {
  local want have=""
  want=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
  if command -v cargo >/dev/null 2>&1; then
    have=$(rustc --version 2>/dev/null | cut -d ' ' -f 2)
  fi
  if [ -n "$have" ] && version_at_least "$have" "$want"; then
    return
  fi
  local found="${have:+rustc $have}"
  cat >&2 <<EOM
$0 needs a Rust toolchain $want or newer (cargo and rustc on PATH); found: ${found:-none}.
Install one with rustup (https://rustup.rs), then run $0 again:

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . "\$HOME/.cargo/env"

A toolchain rustup installed earlier is brought up to date with: rustup update stable
EOM
  exit 1
}

# ensure_packages PACKAGE...: installs the Debian packages that are not installed yet.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  printf '[packages] installing %s (log: %s/apt.log)\n' "${missing[*]}" "$log_dir"
  mkdir -p "$log_dir"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log_dir/apt.log"
}
