#!/usr/bin/env bash
# A Kafka-protocol broker (tansu) on loopback for tests and local use.
#   scripts/kafka.sh start [PORT]   installs tansu once (cached), starts it, waits for it
#   scripts/kafka.sh stop [PORT]
# Prints the bootstrap address (127.0.0.1:PORT) on start. Storage is in memory unless
# SLUICE_KAFKA_STORAGE names another (sqlite://tansu.db, relative to the state directory
# SLUICE_KAFKA_STATE, keeps topics across restarts).
set -euo pipefail
cmd="${1:-start}"
port="${2:-${SLUICE_KAFKA_PORT:-19092}}"
tools="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice-tools-lite}"
storage="${SLUICE_KAFKA_STORAGE:-memory://tansu/}"
state="${SLUICE_KAFKA_STATE:-/tmp/sluice-kafka-$port}"
tansu="$tools/bin/tansu"

install_tansu() {
  if [ -x "$tansu" ]; then return; fi
  if command -v tansu >/dev/null 2>&1; then tansu=$(command -v tansu); return; fi
  echo "installing tansu (the test broker) into $tools, once; this takes about 15 minutes" >&2
  cargo install tansu --locked --features dynostore,libsql --root "$tools" >&2
}

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "tansu did not start on port $port; see $state/tansu.log" >&2
  return 1
}

case "$cmd" in
  start)
    install_tansu
    mkdir -p "$state"
    if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
      echo "127.0.0.1:$port"; exit 0
    fi
    # Relative storage paths (sqlite://tansu.db) live in the state directory.
    cd "$state"
    nohup "$tansu" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" >>"$state/tansu.log" 2>&1 &
    echo $! >"$state/pid"
    wait_port
    echo "127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$state/pid" ]; then
      pid=$(cat "$state/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$state/pid"
    fi
    ;;
  *) echo "usage: $0 start|stop [PORT]" >&2; exit 2 ;;
esac
