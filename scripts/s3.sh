#!/usr/bin/env bash
# An S3-API endpoint on loopback (moto's server) for the checkpoint-store tests.
#   scripts/s3.sh start [PORT]   installs moto[server] once (a venv in the tools cache),
#                                starts it, creates the bucket `sluice-test`, waits for it
#   scripts/s3.sh stop [PORT]
# Prints the endpoint (http://127.0.0.1:PORT) on start. Keys are not checked: any
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY will do.
set -euo pipefail
cmd="${1:-start}"
port="${2:-${SLUICE_S3_PORT:-19000}}"
tools="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice-tools-lite}"
venv="$tools/moto-venv"
state="/tmp/sluice-s3-$port"

case "$cmd" in
  start)
    if [ ! -x "$venv/bin/moto_server" ]; then
      echo "installing moto[server] (the test S3 endpoint) into $venv, once" >&2
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q 'moto[server]' >&2
    fi
    mkdir -p "$state"
    if ! { [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; }; then
      nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$state/moto.log" 2>&1 &
      echo $! >"$state/pid"
    fi
    for _ in $(seq 1 100); do
      if curl -sf -o /dev/null -X PUT "http://127.0.0.1:$port/sluice-test"; then
        echo "http://127.0.0.1:$port"; exit 0
      fi
      sleep 0.2
    done
    echo "the S3 endpoint did not start on port $port; see $state/moto.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$state/pid" ]; then
      kill "$(cat "$state/pid")" 2>/dev/null || true
      rm -f "$state/pid"
    fi
    ;;
  *) echo "usage: $0 start|stop [PORT]" >&2; exit 2 ;;
esac
