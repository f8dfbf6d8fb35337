#!/usr/bin/env bash
# Runs E2B's own SDKs (PyPI `e2b` and `e2b-code-interpreter`; npm `e2b` and
# `@e2b/code-interpreter`; unchanged) against the
# E2B-compatible API of the live server that SANDBOX_URL and SANDBOX_API_KEY (an admin key)
# name: sdk/e2b-tests. Makes an `e2b_…`-shaped key with the admin key (unless E2B_API_KEY is
# set), and points the SDKs at the server with E2B_API_URL / E2B_SANDBOX_URL / E2B_DOMAIN.
# Installs the Python SDKs and pytest into a virtualenv, $E2B_VENV (default: e2b-venv next to
# $TOOLS_VENV, /var/cache/sandbox-tools/e2b-venv), and the npm SDKs into $E2B_NODE (default
# e2b-node beside it; needs node 20 and npm); a later run with the same versions reuses them.
# Called by scripts/live-checks.sh; alone:
#   SANDBOX_URL=http://127.0.0.1:8080 SANDBOX_API_KEY=... scripts/e2b-tests.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
E2B_VERSION=2.63.0
E2B_CI_VERSION=2.11.5
HTTPX_VERSION=0.28.1
PYTEST_VERSION=9.2.0
# The oldest `e2b` that can be pointed at one URL (E2B_SANDBOX_URL): its suite runs too, but
# for what that version lacks (close_stdin) and the code interpreter (whose SDK needs a newer e2b).
E2B_OLD_VERSION=2.7.0
E2B_OLD_TESTS="not run_code and not matplotlib and not dataframe and not exception and not test_contexts and not javascript_context and not stdin and not long_command"
E2B_JS_VERSION=2.51.0
E2B_JS_CI_VERSION=2.8.0
E2B_VENV="${E2B_VENV:-$(dirname "$TOOLS_VENV")/e2b-venv}"
E2B_OLD_VENV="${E2B_OLD_VENV:-$(dirname "$TOOLS_VENV")/e2b-old-venv}"
E2B_NODE="${E2B_NODE:-$(dirname "$TOOLS_VENV")/e2b-node}"

say() { printf '[e2b-tests] %s\n' "$*"; }

: "${SANDBOX_URL:?set SANDBOX_URL (and SANDBOX_API_KEY) to the server to test against}"
: "${SANDBOX_API_KEY:?set SANDBOX_API_KEY to an admin API key of $SANDBOX_URL}"

stamp="e2b==$E2B_VERSION e2b-code-interpreter==$E2B_CI_VERSION httpx==$HTTPX_VERSION pytest==$PYTEST_VERSION"
if [ "$(cat "$E2B_VENV/.e2b-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing $stamp into $E2B_VENV"
  [ -x "$E2B_VENV/bin/pip" ] || python3 -m venv "$E2B_VENV"
  # shellcheck disable=SC2086
  "$E2B_VENV/bin/pip" install --quiet --disable-pip-version-check $stamp
  echo "$stamp" >"$E2B_VENV/.e2b-stamp"
fi

old_stamp="e2b==$E2B_OLD_VERSION httpx==$HTTPX_VERSION pytest==$PYTEST_VERSION"
if [ "$(cat "$E2B_OLD_VENV/.e2b-stamp" 2>/dev/null)" != "$old_stamp" ]; then
  say "installing $old_stamp into $E2B_OLD_VENV"
  [ -x "$E2B_OLD_VENV/bin/pip" ] || python3 -m venv "$E2B_OLD_VENV"
  # shellcheck disable=SC2086
  "$E2B_OLD_VENV/bin/pip" install --quiet --disable-pip-version-check $old_stamp
  echo "$old_stamp" >"$E2B_OLD_VENV/.e2b-stamp"
fi

js_stamp="e2b@$E2B_JS_VERSION @e2b/code-interpreter@$E2B_JS_CI_VERSION"
if [ "$(cat "$E2B_NODE/.e2b-stamp" 2>/dev/null)" != "$js_stamp" ]; then
  say "installing $js_stamp into $E2B_NODE"
  mkdir -p "$E2B_NODE"
  [ -f "$E2B_NODE/package.json" ] || echo '{"private": true}' >"$E2B_NODE/package.json"
  # shellcheck disable=SC2086
  (cd "$E2B_NODE" && npm install --no-audit --no-fund --silent $js_stamp)
  echo "$js_stamp" >"$E2B_NODE/.e2b-stamp"
fi

if [ -z "${E2B_API_KEY:-}" ]; then
  E2B_API_KEY=$(curl -fsS -X POST -H "Authorization: Bearer $SANDBOX_API_KEY" -H 'Content-Type: application/json' \
    -d '{"name": "e2b-tests", "e2b_format": true}' "$SANDBOX_URL/api/v1/admin/keys" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
fi
# One listener serves both planes here (the dispatch the data plane's headers select).
export E2B_API_KEY E2B_API_URL="${E2B_API_URL:-$SANDBOX_URL}" E2B_SANDBOX_URL="${E2B_SANDBOX_URL:-$SANDBOX_URL}"
export E2B_DOMAIN="${E2B_DOMAIN:-localhost}"

say "Python: e2b $E2B_VERSION and e2b-code-interpreter $E2B_CI_VERSION against $E2B_API_URL"
"$E2B_VENV/bin/python" -m pytest -p no:cacheprovider -q --ignore=sdk/e2b-tests/node_modules sdk/e2b-tests "$@"
say "Python: the oldest e2b that takes E2B_SANDBOX_URL, $E2B_OLD_VERSION, against $E2B_API_URL"
"$E2B_OLD_VENV/bin/python" -m pytest -p no:cacheprovider -q --ignore=sdk/e2b-tests/node_modules sdk/e2b-tests \
  -k "$E2B_OLD_TESTS" "$@"
say "JavaScript: $js_stamp against $E2B_API_URL"
# The test imports the packages from $E2B_NODE: a symlinked node_modules next to it.
ln -sfn "$E2B_NODE/node_modules" sdk/e2b-tests/node_modules
node --test --test-concurrency=1 sdk/e2b-tests/e2b-sdk.test.mjs
