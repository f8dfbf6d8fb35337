#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, the whole test suite (unit tests, the SQLite and
# MariaDB store tests, and the end-to-end tests against real containers), then the live checks
# (conformance corpus and schemathesis against a running server on MariaDB), then a quick
# benchmark run that must succeed. Expects scripts/setup.sh to have run once (packages, images);
# it makes sure dockerd runs, installs and starts the test tools (scripts/test-tools.sh: MariaDB,
# cargo-nextest, schemathesis, kubernetes-validate, helm-python-sdk) and rebuilds the images if
# the executor changed. Arguments go to both cargo nextest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh services
scripts/test-tools.sh
images/build.sh
echo "[test] cargo fmt --check"
cargo fmt --all -- --check
echo "[test] cargo clippy"
cargo clippy --quiet --workspace --all-targets -- -D warnings
# The server's tests and the live checks note every error code they provoke; after a whole run
# each registered code must have been provoked (scripts/error-codes-check.py). A run narrowed by
# arguments skips that.
ledger=""
if [ $# -eq 0 ]; then
    ledger="$(mktemp -d)"
    export SANDBOX_ERROR_CODE_LEDGER="$ledger"
fi
echo "[test] cargo nextest"
cargo nextest run --workspace --profile ci -E 'not binary(exclusive_e2e)' "$@"
echo "[test] cargo nextest: tests that need the machine to themselves (they kill dockerd, load it)"
cargo nextest run --workspace --profile ci -E 'binary(exclusive_e2e)' --test-threads 1 "$@"
echo "[test] live checks"
scripts/live-checks.sh
if [ -n "$ledger" ]; then
    echo "[test] every error code provoked by a test"
    scripts/error-codes-check.py "$ledger"
    rm -rf "$ledger"
    unset SANDBOX_ERROR_CODE_LEDGER
fi
echo "[test] benchmark, quick: every section runs and succeeds (timings are not judged on CI machines)"
cargo build --quiet -p sandbox-server -p sandbox-bench
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bench_out="$(mktemp -d)"
"$target_dir/debug/sandbox-bench" --quick --server-bin "$target_dir/debug/sandbox-server" --json "$bench_out/bench.json"
rm -rf "$bench_out"
