#!/usr/bin/env bash
# The newcomer's first command: prepares this machine (packages, dockerd, images) and runs a
# demo in a real hardened sandbox container.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "[quickstart] running the demo"
cargo run --quiet --release -p sandbox-e2e --example executor_demo
