#!/usr/bin/env bash
# Makes sure a local MariaDB server answers on 127.0.0.1:3306, idempotently and quickly when it
# already runs: installs mariadb-server if missing, initialises the datadir if empty, starts
# mariadbd in the background, waits for it, then creates the user sandbox/sandbox and the
# database `sandbox`. The store's MySQL tests (crates/store) connect to it. Run as root.
#
# TEST/DEV MACHINES ONLY: the `sandbox` user has a well-known password and every privilege on
# every database (the tests create and drop their own databases).
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

socket=/run/mysqld/mysqld.sock
datadir=/var/lib/mysql
log="$log_dir/mariadb.log"

say() { printf '[mariadb] %s\n' "$*"; }

require_root scripts/mariadb.sh "it installs and starts mariadbd"

answering() { mariadb-admin --socket="$socket" --connect-timeout=2 ping >/dev/null 2>&1; }

ensure_packages mariadb-server

if ! answering; then
  mkdir -p "$log_dir" /run/mysqld
  chown mysql:mysql /run/mysqld
  if [ ! -d "$datadir/mysql" ]; then
    say "initialising $datadir"
    mkdir -p "$datadir"
    chown mysql:mysql "$datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >>"$log" 2>&1
  fi
  say "starting mariadbd (log: $log)"
  setsid mariadbd --user=mysql --datadir="$datadir" --socket="$socket" \
    --bind-address=127.0.0.1 --port=3306 --pid-file=/run/mysqld/mysqld.pid \
    >>"$log" 2>&1 </dev/null &
  pid=$!
  for _ in $(seq 60); do
    answering && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "mariadbd exited; the end of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    sleep 0.5
  done
  if ! answering; then
    echo "mariadbd did not answer within 30 s; the end of $log:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
fi

# root authenticates over the socket (unix_socket), as on any Debian install.
mariadb --socket="$socket" --user=root <<'SQL'
CREATE USER IF NOT EXISTS 'sandbox'@'127.0.0.1' IDENTIFIED BY 'sandbox';
CREATE USER IF NOT EXISTS 'sandbox'@'localhost' IDENTIFIED BY 'sandbox';
ALTER USER 'sandbox'@'127.0.0.1' IDENTIFIED BY 'sandbox';
ALTER USER 'sandbox'@'localhost' IDENTIFIED BY 'sandbox';
GRANT ALL PRIVILEGES ON *.* TO 'sandbox'@'127.0.0.1';
GRANT ALL PRIVILEGES ON *.* TO 'sandbox'@'localhost';
CREATE DATABASE IF NOT EXISTS sandbox CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
SQL
say "ready: mysql://sandbox:sandbox@127.0.0.1:3306/sandbox"
