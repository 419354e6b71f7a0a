#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test. Installs what the build
# needs first. Services (Kafka broker, PostgreSQL) are started here once tests need them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/env.sh
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests" >&2
cargo nextest run --workspace --no-fail-fast
