#!/usr/bin/env bash
# Runs the MCP tests (sdk/mcp-tests): the server's /mcp tools driven by the official MCP client
# against the live server that SANDBOX_URL and SANDBOX_API_KEY name, over streamable HTTP and
# over stdio through `sandbox mcp` (the CLI that SANDBOX_CLI names; built here when unset). Installs the client and
# pytest into a virtualenv, $MCP_VENV (default: mcp-venv next to $TOOLS_VENV,
# /var/cache/sandbox-tools/mcp-venv); a later run with the same versions reuses it without asking
# the package index.
# Called by scripts/live-checks.sh; alone:
#   SANDBOX_URL=http://127.0.0.1:8080 SANDBOX_API_KEY=... scripts/mcp-tests.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
MCP_VERSION=2.3.0
PYTEST_VERSION=9.2.0
MCP_VENV="${MCP_VENV:-$(dirname "$TOOLS_VENV")/mcp-venv}"

say() { printf '[mcp-tests] %s\n' "$*"; }

: "${SANDBOX_URL:?set SANDBOX_URL (and SANDBOX_API_KEY) to the server to test against}"
: "${SANDBOX_API_KEY:?set SANDBOX_API_KEY to an API key of $SANDBOX_URL}"

stamp="mcp==$MCP_VERSION pytest==$PYTEST_VERSION"
if [ "$(cat "$MCP_VENV/.mcp-stamp" 2>/dev/null)" != "$stamp" ]; then
  say "installing mcp and pytest into $MCP_VENV"
  [ -x "$MCP_VENV/bin/pip" ] || python3 -m venv "$MCP_VENV"
  "$MCP_VENV/bin/pip" install --quiet --disable-pip-version-check "mcp==$MCP_VERSION" "pytest==$PYTEST_VERSION"
  echo "$stamp" >"$MCP_VENV/.mcp-stamp"
fi

if [ -z "${SANDBOX_CLI:-}" ]; then
  cargo build --quiet -p sandbox-cli
  SANDBOX_CLI="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/sandbox"
fi
export SANDBOX_CLI

say "testing $SANDBOX_URL/mcp (streamable HTTP, and stdio through $SANDBOX_CLI mcp)"
"$MCP_VENV/bin/python" -m pytest -p no:cacheprovider -q sdk/mcp-tests "$@"
