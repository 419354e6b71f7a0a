#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 (or PGPORT): starts the
# machine's cluster if it is stopped, installs Debian's package if there is none.
# Prints a connection URL for the tests (user postgres, trust auth on loopback).
set -euo pipefail
port="${PGPORT:-5432}"
url="postgres://postgres@127.0.0.1:$port/postgres"
ready() { pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian's package)" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq postgresql >/dev/null
fi
if ! ready; then
  echo "starting PostgreSQL" >&2
  version=$(ls /etc/postgresql | sort -V | tail -1)
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 50); do ready && break; sleep 0.2; done
fi
if ! ready; then
  echo "PostgreSQL does not answer on 127.0.0.1:$port" >&2
  exit 1
fi
# Trust auth on loopback is what the tests expect; say so if it is not there.
if ! psql "$url" -Atqc 'select 1' >/dev/null 2>&1; then
  echo "cannot connect as $url (the tests expect user postgres with trust auth on loopback)" >&2
  exit 1
fi
echo "$url"
