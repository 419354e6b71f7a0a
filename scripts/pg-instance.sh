#!/usr/bin/env bash
# A private PostgreSQL server for tests that stop and start it under a running job.
#   scripts/pg-instance.sh start DIR PORT   creates the cluster in DIR once, starts it
#   scripts/pg-instance.sh stop DIR         fast shutdown (connections are cut)
# Trust auth, user postgres, on 127.0.0.1:PORT. Uses the machine's PostgreSQL binaries
# (scripts/postgres.sh installs them); runs them as user postgres when called as root.
set -euo pipefail
cmd="${1:?usage: $0 start|stop DIR [PORT]}"
dir="${2:?usage: $0 start|stop DIR [PORT]}"
port="${3:-55432}"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ]; then
  echo "no PostgreSQL binaries under /usr/lib/postgresql (run scripts/postgres.sh)" >&2
  exit 1
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
      chown postgres "$dir"
      # The server runs as postgres: it must be able to reach DIR (a test's temp dir).
      p=$(dirname "$(realpath "$dir")")
      while [ "$p" != "/" ]; do chmod o+x "$p"; p=$(dirname "$p"); done
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-sync >"$dir.initdb.log" 2>&1 || {
        cat "$dir.initdb.log" >&2
        exit 1
      }
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir" -w -t 30 -l "$dir/server.log" \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
      tail -20 "$dir/server.log" >&2
      exit 1
    fi
    ;;
  stop)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null
    ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
