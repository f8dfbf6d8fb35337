#!/usr/bin/env bash
# The newcomer's first command: prepares this machine (scripts/setup.sh: packages, dockerd,
# images; the test tools are scripts/test.sh's), starts sandbox-server on its embedded defaults
# (SQLite and workspaces in /var/lib/sandbox, listening on 127.0.0.1:8000), runs a demo
# through the REST API, and installs the command-line client (`sandbox`, in /usr/local/bin)
# logged in to the server with the admin key. The server keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

say() { printf '[quickstart] %s\n' "$*"; }
data_dir="${SANDBOX_DATA_DIR:-/var/lib/sandbox}"
listen="${SANDBOX_LISTEN:-127.0.0.1:8000}"
url="http://$listen"
log=/var/log/sandbox/server.log

say "building sandbox-server and the sandbox CLI (release)"
cargo build --release --quiet -p sandbox-server -p sandbox-cli
release="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release"
bin="$release/sandbox-server"

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

say "installing the sandbox CLI in /usr/local/bin and logging it in to $url"
install -m 0755 "$release/sandbox" /usr/local/bin/sandbox
printf '%s\n' "$key" | env -u SANDBOX_URL -u SANDBOX_KEY /usr/local/bin/sandbox login --url "$url"
env -u SANDBOX_URL -u SANDBOX_KEY /usr/local/bin/sandbox exec --code 'print("the sandbox CLI works:", 6 * 7)'
cat <<EOM

The server keeps running on $url.
  API key:   $key   (stored in $data_dir/admin-api-key)
  API docs:  $url/openapi.json
  Try it:    sandbox exec --code 'print(6 * 7)'     (docs/cli.md)
             curl -H "Authorization: Bearer $key" $url/api/v1/templates
  Stop it:   kill \$(cat /run/sandbox-server.pid)
EOM
