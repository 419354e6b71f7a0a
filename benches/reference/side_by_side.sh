#!/usr/bin/env bash
# Nexmark beside Flink, round by round: for each round and query, Sluice's run
# (`sluice-benches nexmark-one`) and then Flink's (`flink_nexmark.py`) over the same JSON
# files, one after the other, so each round's ratio is two runs of the same minutes.
# Round 1 checks Flink's batch row count against Sluice's; later rounds only time.
#
#   benches/reference/side_by_side.sh --rounds 3 --queries "q5 q9" > side.jsonl
#
# SLUICE_BENCHES (default: the bench-fast build) and FLINK_PYTHON (default:
# /tmp/flink/bin/python, see flink_generated.py) say which programs run. The JSON files
# must exist: `sluice-benches nexmark --events N --input json --queries q0` writes them.
# Each output line is one run's JSON with "round" added.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds=3 queries="q0 q1 q2" events=10000000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --queries) queries="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--queries \"q0 q5\"] [--events N]" >&2; exit 2 ;;
  esac
done
sb="${SLUICE_BENCHES:-${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}/bench-fast/sluice-benches}"
py="${FLINK_PYTHON:-/tmp/flink/bin/python}"
line=$(mktemp)
trap 'rm -f "$line"' EXIT
for r in $(seq 1 "$rounds"); do
  for q in $queries; do
    "$sb" nexmark-one "$q" --events "$events" --input json 2>/dev/null | grep '^{' > "$line"
    sed "s/^{/{\"round\":$r,\"engine\":\"sluice\",/" "$line"
    check=(); [ "$r" -gt 1 ] && check=(--no-check)
    "$py" "$here/flink_nexmark.py" --events "$events" --queries "$q" "${check[@]}" \
      --sluice "$line" | grep '^{' | sed "s/^{/{\"round\": $r, /"
  done
done
