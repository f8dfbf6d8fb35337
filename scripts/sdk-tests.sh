#!/usr/bin/env bash
# Runs the tests of the Python SDK (sdk/python/tests) against the live server that SANDBOX_URL
# and SANDBOX_API_KEY name.
# Installs the package (editable) and pytest into a virtualenv, $SDK_VENV
# (default: sdk-venv next to $TOOLS_VENV, /var/cache/sandbox-tools/sdk-venv); a later run with
# the same versions, pyproject.toml and checkout reuses it without asking the package index.
# Called by scripts/live-checks.sh; alone:
#   SANDBOX_URL=http://127.0.0.1:8080 SANDBOX_API_KEY=... scripts/sdk-tests.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
HTTPX_VERSION=0.28.1
PYTEST_VERSION=9.2.0
SDK_VENV="${SDK_VENV:-$(dirname "$TOOLS_VENV")/sdk-venv}"

say() { printf '[sdk-tests] %s\n' "$*"; }

: "${SANDBOX_URL:?set SANDBOX_URL (and SANDBOX_API_KEY) to the server to test against}"
: "${SANDBOX_API_KEY:?set SANDBOX_API_KEY to an API key of $SANDBOX_URL}"

# What the virtualenv was made from: an editable install points at this checkout.
stamp="httpx==$HTTPX_VERSION pytest==$PYTEST_VERSION $PWD $(sha256sum sdk/python/pyproject.toml | cut -d ' ' -f 1)"
if [ "$(cat "$SDK_VENV/.sdk-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing sdk/python and pytest into $SDK_VENV"
  [ -x "$SDK_VENV/bin/pip" ] || python3 -m venv "$SDK_VENV"
  "$SDK_VENV/bin/pip" install --quiet --disable-pip-version-check -e sdk/python \
    "httpx==$HTTPX_VERSION" "pytest==$PYTEST_VERSION"
  echo "$stamp" >"$SDK_VENV/.sdk-stamp"
fi

say "testing against $SANDBOX_URL"
PATH="$SDK_VENV/bin:$PATH" "$SDK_VENV/bin/python" -m pytest -p no:cacheprovider -q sdk/python/tests "$@"
