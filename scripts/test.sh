#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and the whole test suite (unit tests and the
# end-to-end tests against real containers). Expects scripts/setup.sh to have run once; it
# makes sure the services are up and the images match the current executor.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh services
images/build.sh
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
echo "[test] cargo nextest"
cargo nextest run --workspace --profile ci "$@"
