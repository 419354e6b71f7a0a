#!/usr/bin/env bash
# Builds Sluice (installing what the build needs) and runs `sluice demo`: the IoT and
# user-activity generators and the four reference jobs in one process, results shown
# live. No Kafka, no database. Extra arguments go to `sluice demo` (e.g. --duration 20s).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
# The dev profile (dependencies optimised) builds much faster than release and is
# plenty for the demo's rates; it shares its build with the tests.
cargo build -p sluice
exec "$CARGO_TARGET_DIR/debug/sluice" demo "$@"
