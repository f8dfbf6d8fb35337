#!/usr/bin/env bash
# Installs and starts what the tests need beyond scripts/setup.sh, idempotently and quickly when
# everything is there already:
#   - MariaDB on 127.0.0.1:3306 (scripts/mariadb.sh): the store's MySQL tests, two replicas on one
#     database, the live checks;
#   - cargo-nextest, the test runner;
#   - node and npm (E2B's npm SDKs in scripts/e2b-tests.sh), from Debian unless some node is there;
#   - schemathesis (the live checks), kubernetes-validate and helm-python-sdk (the Kubernetes
#     tests) in a virtualenv, $TOOLS_VENV (default /var/cache/sandbox-tools/venv).
# scripts/test.sh runs it first. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
SCHEMATHESIS_VERSION=4.32.5
KUBERNETES_VALIDATE_VERSION=1.37.0
HELM_PYTHON_SDK_VERSION=0.2.2

say() { printf '[test-tools] %s\n' "$*"; }

require_root scripts/test-tools.sh "it installs packages and starts MariaDB"
require_rust
ensure_packages python3 python3-venv ca-certificates
command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
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
scripts/mariadb.sh
say "ready"
