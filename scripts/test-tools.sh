#!/usr/bin/env bash
# Installs what the tests use beyond the build (safe to run again): Debian's chromium
# (the console's browser tests; no browser is ever downloaded), Debian's prometheus
# (scrapes a real server in a test), and playwright-core from npm to drive chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
console=crates/sluice/tests/console
if [ ! -d "$console/node_modules/playwright-core" ]; then
  echo "installing playwright-core (npm, no browser download)" >&2
  (cd "$console" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >&2)
fi
