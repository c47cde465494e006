#!/usr/bin/env bash
# Installs every Debian 12 package pgwarden needs to build, test, fuzz and benchmark.
# Idempotent: does nothing when everything is already installed. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake git pkg-config ca-certificates openssl
  libssl-dev libasio-dev libtomlplusplus-dev nlohmann-json3-dev libcli11-dev libspdlog-dev
  libpg-query-dev libidn-dev libgtest-dev libgmock-dev libbenchmark-dev
  postgresql-15 postgresql-client-15 libpq-dev pgbouncer
  clang-19 libclang-rt-19-dev clang-format clang-tools-19
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
