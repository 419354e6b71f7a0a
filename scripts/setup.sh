#!/usr/bin/env bash
# Installs what building Sluice needs on a fresh Debian machine with only the Rust
# toolchain: a C compiler, cmake and curl headers (for librdkafka) and mold (a fast
# linker). Safe to run again.
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v mold >/dev/null 2>&1 || need+=(mold)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# rdkafka builds librdkafka with cmake and needs curl's headers.
command -v cmake >/dev/null 2>&1 || need+=(cmake)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || need+=(libcurl4-openssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${need[*]}" >&2
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest (once)" >&2
  cargo install cargo-nextest --locked
fi
