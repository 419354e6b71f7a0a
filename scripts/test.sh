#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test. Installs what the build and
# the tests need first (scripts/setup.sh; scripts/test-tools.sh: chromium, prometheus,
# playwright-core) and starts the services the tests use (a Kafka-protocol broker and an
# S3-API endpoint on loopback, and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
# --long: the long drills (many kills, bigger runs) instead of their short versions.
if [ "${1:-}" = "--long" ]; then
  export SLUICE_LONG=1
  shift
fi
scripts/setup.sh
scripts/test-tools.sh
. scripts/env.sh
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== starting the test broker" >&2
SLUICE_KAFKA_BROKERS=$(scripts/kafka.sh start)
export SLUICE_KAFKA_BROKERS
trap 'scripts/kafka.sh stop' EXIT
echo "== the test S3 endpoint" >&2
SLUICE_TEST_S3_ENDPOINT=$(scripts/s3.sh start)
export SLUICE_TEST_S3_ENDPOINT
trap 'scripts/kafka.sh stop; scripts/s3.sh stop' EXIT
echo "== PostgreSQL" >&2
SLUICE_TEST_DATABASE_URL=$(scripts/postgres.sh)
export SLUICE_TEST_DATABASE_URL
echo "== tests" >&2
cargo nextest run --workspace --no-fail-fast "$@"
