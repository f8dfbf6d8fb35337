#!/usr/bin/env bash
# The newcomer's first command: prepares this machine (scripts/setup.sh: packages, dockerd,
# images; the test tools are scripts/test.sh's), starts sandbox-server on its embedded defaults
# (SQLite and workspaces in /var/lib/sandbox, listening on 127.0.0.1:8000) and runs a demo
# through the REST API. The server keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

say() { printf '[quickstart] %s\n' "$*"; }
data_dir="${SANDBOX_DATA_DIR:-/var/lib/sandbox}"
listen="${SANDBOX_LISTEN:-127.0.0.1:8000}"
url="http://$listen"
log=/var/log/sandbox/server.log

say "building sandbox-server (release)"
cargo build --release --quiet -p sandbox-server
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/sandbox-server"

if curl -fsS "$url/api/v1/health" >/dev/null 2>&1; then
  say "a server already answers on $url; using it"
else
  say "starting sandbox-server on $url (data: $data_dir, log: $log)"
  SANDBOX_DATA_DIR="$data_dir" SANDBOX_LISTEN="$listen" setsid "$bin" serve >>"$log" 2>&1 < /dev/null &
  echo $! > /run/sandbox-server.pid
  for _ in $(seq 1 100); do
    curl -fsS "$url/api/v1/health" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "$url/api/v1/health" >/dev/null || { tail -20 "$log"; exit 1; }
fi

key="${SANDBOX_API_KEY:-$(cat "$data_dir/admin-api-key")}"
say "running the demo (scripts/demo.py)"
SANDBOX_URL="$url" SANDBOX_API_KEY="$key" python3 scripts/demo.py
cat <<EOM

The server keeps running on $url.
  API key:   $key   (stored in $data_dir/admin-api-key)
  API docs:  $url/openapi.json
  Try it:    curl -H "Authorization: Bearer $key" $url/api/v1/templates
  Stop it:   kill \$(cat /run/sandbox-server.pid)
EOM
