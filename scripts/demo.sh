#!/usr/bin/env bash
# Builds Sluice (installing what the build needs) and runs the example job on the
# bundled sample data: no Kafka, no database.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
cargo build --release -p sluice
exec "$CARGO_TARGET_DIR/release/sluice" run sql/example_iot_file.sql "$@"
