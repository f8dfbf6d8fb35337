#!/usr/bin/env bash
# Starts the real sandbox-server on a MariaDB store and a real Docker daemon, and checks it from
# outside through HTTP only:
#   1. conformance/run.py: every case of the conformance corpus through the REST API, stateless
#      and again each as a cell of a code context of its own,
#   2. scripts/sdk-tests.sh: the Python SDK (sdk/python/tests), and scripts/mcp-tests.sh: the
#      server's MCP tools at /mcp through the official MCP client (sdk/mcp-tests),
#   3. scripts/e2b-tests.sh: E2B's own Python SDKs against the E2B-compatible API
#      (sdk/e2b-tests),
#   4. conformance/attacks.py: the attacks on the control plane itself (control-plane.json),
#   5. schemathesis against the server's /openapi.json: no 5xx, responses match the schema.
#      Package installs never leave the host here: the only index is a loopback port the egress
#      proxy may not reach, with no download hosts, so an install the fuzzer manages to start
#      fails fast as "index unreachable". (Port 1: the attacks name 127.0.0.1:9 as an index the
#      operator did not allow.)
#      Templates never pull (templates.pull_images = false): an image the fuzzer names is
#      refused with 422 rather than looked up in a registry. The two streams that last until
#      the client leaves (a directory watch, a process's output) are left to the end-to-end
#      tests: a fuzzer's request would never end.
# Called by scripts/test.sh; needs scripts/setup.sh (images) and scripts/test-tools.sh (MariaDB,
# schemathesis) to have run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
say() { printf '[live] %s\n' "$*"; }

cargo build --quiet -p sandbox-server
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/sandbox-server"

work=$(mktemp -d)
db="sandbox_live_$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key="live-check-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export SANDBOX_URL="http://127.0.0.1:$port" SANDBOX_API_KEY="$key"
mariadb --socket=/run/mysqld/mysqld.sock -e "CREATE DATABASE \`$db\`"

server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    # Delete every session the checks created (their sandboxes go with them), then stop.
    for s in $(curl -fsS -H "Authorization: Bearer $key" "$SANDBOX_URL/api/v1/sessions?limit=1000" |
               python3 -c 'import json,sys; print(" ".join(i["id"] for i in json.load(sys.stdin)["items"]))' 2>/dev/null); do
      curl -fsS -o /dev/null -X DELETE -H "Authorization: Bearer $key" "$SANDBOX_URL/api/v1/sessions/$s" || true
    done
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  # Pool sandboxes outlive a server by design; these checks leave nothing behind.
  for d in "$work"/data/sessions/*; do
    [ -d "$d" ] || continue
    docker rm -f -v "sandbox-$(basename "$d")" >/dev/null 2>&1 || true
    umount "$d/workspace" 2>/dev/null || true
  done
  mariadb --socket=/run/mysqld/mysqld.sock -e "DROP DATABASE IF EXISTS \`$db\`" || true
  # Every error the checks provoked counts for scripts/error-codes-check.py.
  if [ -n "${SANDBOX_ERROR_CODE_LEDGER:-}" ] && [ -f "$work/server.log" ]; then
    mkdir -p "$SANDBOX_ERROR_CODE_LEDGER"
    sed -nE 's/.* status=([0-9]+) error_code="?([a-z_]+)"?.*/\1 \2/p' "$work/server.log" \
      >"$SANDBOX_ERROR_CODE_LEDGER/live-checks"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "starting sandbox-server on $SANDBOX_URL (MariaDB database $db)"
SANDBOX_DATA_DIR="$work/data" SANDBOX_LISTEN="127.0.0.1:$port" SANDBOX_LOG_FORMAT=text \
SANDBOX_DATABASE_URL="mysql://sandbox:sandbox@127.0.0.1:3306/$db" SANDBOX_DEPENDENCIES__DEFAULT_INDEX_URL=http://127.0.0.1:1/simple/ SANDBOX_DEPENDENCIES__DOWNLOAD_HOSTS= \
SANDBOX_TEMPLATES__PULL_IMAGES=false \
  "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$SANDBOX_URL/api/v1/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$SANDBOX_URL/api/v1/health" >/dev/null || { cat "$work/server.log"; exit 1; }

say "conformance corpus through the REST API"
if ! python3 conformance/run.py conformance/cases.json; then
  tail -50 "$work/server.log"
  exit 1
fi
say "conformance corpus inside code contexts"
if ! python3 conformance/run.py --contexts conformance/cases.json; then
  tail -50 "$work/server.log"
  exit 1
fi

say "Python SDK (sdk/python)"
if ! scripts/sdk-tests.sh; then
  tail -50 "$work/server.log"
  exit 1
fi

say "MCP at /mcp through the official MCP client (sdk/mcp-tests)"
if ! scripts/mcp-tests.sh; then
  tail -50 "$work/server.log"
  exit 1
fi

say "E2B's Python SDKs against the E2B-compatible API (sdk/e2b-tests)"
if ! scripts/e2b-tests.sh; then
  tail -50 "$work/server.log"
  exit 1
fi

say "attacks on the control plane through the REST API"
if ! SANDBOX_TEMPLATE=python-basic python3 conformance/attacks.py conformance/control-plane.json; then
  tail -50 "$work/server.log"
  exit 1
fi

say "schemathesis against /openapi.json"
if ! "$TOOLS_VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$SANDBOX_URL/openapi.json" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path-regex '/files-watch$|/processes/\{pid\}/stream$' \
    --phases examples,coverage,fuzzing --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --workers 1 --request-timeout 120 --suppress-health-check all --no-color; then
  tail -50 "$work/server.log"
  exit 1
fi
say "all live checks passed"
