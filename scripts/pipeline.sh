#!/usr/bin/env bash
# The docker-compose pipeline on one machine without Docker:
#   scripts/pipeline.sh start    Kafka-protocol broker (tansu) and PostgreSQL if they are
#                                not running, the schema, `sluice serve`, the IoT and
#                                user-activity generators, the four reference jobs of
#                                sql/ with the catalogs sql/catalog/kafka.sql, postgres.sql
#   scripts/pipeline.sh stop     generators, then the server (its jobs take a final
#                                checkpoint), then the broker this script started
#   scripts/pipeline.sh status
# Settings (environment): SLUICE_PIPELINE_STATE (default /tmp/sluice-pipeline: logs,
# pids, checkpoints), SLUICE_PIPELINE_PORT (server, 8080), SLUICE_PIPELINE_KAFKA_PORT
# (19093), SLUICE_PIPELINE_DB (database name, sluice), GEN_SPEEDUP (event time runs this
# many times faster than the clock, 10), IOT_RATE (200), USER_RATE (100), SLUICE_BIN (a
# built sluice binary; default: build one).
set -euo pipefail
cd "$(dirname "$0")/.."
cmd="${1:-start}"
state="${SLUICE_PIPELINE_STATE:-/tmp/sluice-pipeline}"
port="${SLUICE_PIPELINE_PORT:-8080}"
kafka_port="${SLUICE_PIPELINE_KAFKA_PORT:-19093}"
db="${SLUICE_PIPELINE_DB:-sluice}"
server="http://127.0.0.1:$port"
mkdir -p "$state"

alive() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

stop_one() {
  if alive "$1"; then
    local pid
    pid=$(cat "$state/$1.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$state/$1.pid"
}

case "$cmd" in
  start)
    if [ -n "${SLUICE_BIN:-}" ]; then
      sluice="$SLUICE_BIN"
    else
      scripts/setup.sh
      . scripts/env.sh
      echo "== building sluice" >&2
      cargo build -q -p sluice
      sluice="$CARGO_TARGET_DIR/debug/sluice"
    fi
    echo "== broker" >&2
    brokers=$(SLUICE_KAFKA_STATE="$state/kafka" scripts/kafka.sh start "$kafka_port")
    echo "== PostgreSQL" >&2
    admin=$(scripts/postgres.sh)
    base="${admin%/*}"
    url="$base/$db"
    if [ "$(psql "$admin" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
      psql "$admin" -qc "CREATE DATABASE \"$db\""
    fi
    psql "$url" -q -v ON_ERROR_STOP=1 -f sql/schema.sql >/dev/null
    if ! alive server; then
      echo "== sluice serve on $server" >&2
      KAFKA_BROKERS="$brokers" DATABASE_URL="$url" \
        SLUICE_ALLOW_ENV=KAFKA_BROKERS,DATABASE_URL,IOT_SENSORS_TOPIC,USER_ACTIVITY_TOPIC,SCAN_BOUNDED,STARTUP_MODE,ALERTS_TOPIC,FACTORY_READINGS_TOPIC,FACTORY_ALERTS_TOPIC,THRESHOLDS_TTL,HOST_METRICS_TOPIC,RACE_POSITIONS_TOPIC \
        nohup "$sluice" serve --listen "127.0.0.1:$port" --checkpoint-dir "$state/checkpoints" \
        --data-dir "$state/files" --checkpoint-interval 5s >>"$state/server.log" 2>&1 &
      echo $! >"$state/server.pid"
    fi
    for _ in $(seq 1 100); do "$sluice" jobs --server "$server" >/dev/null 2>&1 && break; sleep 0.2; done
    "$sluice" jobs --server "$server" >/dev/null
    start_ms=$(( ($(date +%s) - 3600) * 1000 ))
    speedup="${GEN_SPEEDUP:-10}"
    for gen in iot user-activity factory race; do
      if ! alive "gen-$gen"; then
        case "$gen" in
          iot) topic=iot_sensors; rate="${IOT_RATE:-200}" ;;
          factory) topic=factory_readings; rate="${FACTORY_RATE:-60}" ;;
          race) topic=race_positions; rate="${RACE_RATE:-100}" ;;
          *) topic=user_activity; rate="${USER_RATE:-100}" ;;
        esac
        nohup "$sluice" generate "$gen" --brokers "$brokers" --topic "$topic" --rate "$rate" \
          --speedup "$speedup" --start-time "$start_ms" >>"$state/gen-$gen.log" 2>&1 &
        echo $! >"$state/gen-$gen.pid"
      fi
    done
    # This machine's own usage, as each host's agent would send it.
    if ! alive gen-host-metrics; then
      nohup "$sluice" generate host-metrics --brokers "$brokers" --topic host_metrics \
        --interval "${HOST_INTERVAL:-5s}" >>"$state/gen-host-metrics.log" 2>&1 &
      echo $! >"$state/gen-host-metrics.pid"
    fi
    # The test broker creates no topic on first use: the factory alerts' topic is made
    # here (a generator that sends nothing creates its topic).
    "$sluice" generate factory --brokers "$brokers" --topic factory_alerts --limit 0 >/dev/null 2>&1
    echo "== jobs" >&2
    # Streams from Kafka, results into PostgreSQL (added in this order: later replace).
    "$sluice" catalog add kafka sql/catalog/kafka.sql --server "$server" >/dev/null
    "$sluice" catalog add postgres sql/catalog/postgres.sql --server "$server" >/dev/null
    for job in iot_aggregates iot_alerts user_activity long_sessions sensor_state factory_alerts factory_health host_status race_laps race_map; do
      state_now=$("$sluice" job "$job" --server "$server" 2>/dev/null | awk '$1 == "state" {print $2}' || true)
      case "$state_now" in
        running|starting|restarting) ;;
        "") "$sluice" submit "sql/$job.sql" --name "$job" --server "$server" >/dev/null ;;
        *) "$sluice" resume "$job" --server "$server" ;;
      esac
    done
    "$sluice" jobs --server "$server"
    cat <<EOF

The pipeline runs. Where to look:
  sluice jobs --server $server           (and: sluice job iot_aggregates --server $server)
  curl $server/metrics                    Prometheus text
  psql $url -c 'SELECT * FROM sensor_metrics_5m ORDER BY window_start DESC LIMIT 10'
  Grafana: point a data source at $url and load grafana/dashboards/*.json, or use
  docker compose up for the whole thing with Grafana on http://localhost:3000
Logs, pids and checkpoints: $state. Stop it all with: scripts/pipeline.sh stop
EOF
    ;;
  stop)
    stop_one gen-iot
    stop_one gen-user-activity
    stop_one gen-factory
    stop_one gen-race
    stop_one gen-host-metrics
    stop_one server
    SLUICE_KAFKA_STATE="$state/kafka" scripts/kafka.sh stop "$kafka_port"
    echo "stopped (the jobs took a final checkpoint; start again to resume them)" >&2
    ;;
  status)
    for p in server gen-iot gen-user-activity gen-factory gen-race gen-host-metrics; do
      if alive "$p"; then echo "$p: running (pid $(cat "$state/$p.pid"))"; else echo "$p: stopped"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
