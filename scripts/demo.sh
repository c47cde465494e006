#!/usr/bin/env bash
# The README's "run" command. Installs dependencies, builds pgwarden (Release), starts a
# throwaway PostgreSQL 15 with TLS on a free loopback port, and shows what pgwarden does today:
#   - `pgwarden hash-password` makes a SCRAM verifier that PostgreSQL accepts as-is,
#   - psql logs in with it over verify-full TLS with SCRAM channel binding required,
#   - `pgwarden check` validates the example configurations.
# Everything it starts is stopped and removed on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/deps.sh
build=${PGWARDEN_BUILD_DIR:-build/release}
echo "building pgwarden (Release) in $build ..."
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DPGWARDEN_TESTS=OFF >/dev/null
if ! cmake --build "$build" -j"$(nproc)" --target pgwarden >"$build/demo-build.log" 2>&1; then
  tail -n 40 "$build/demo-build.log"
  exit 1
fi
pgwarden=$root/$build/src/cli/pgwarden
pgbin=/usr/lib/postgresql/15/bin

tmp=$(mktemp -d /tmp/pgwarden-demo.XXXXXX)
chmod 755 "$tmp"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  if [ -f "$tmp/pg/postmaster.pid" ]; then
    "${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "$("$pgwarden" --version)"

step "Certificates (scripts/make-certs.sh)"
scripts/make-certs.sh "$tmp/certs"

step "Throwaway PostgreSQL 15 with TLS"
free_port() {  # a loopback port nothing answers on
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  return 1
}
port=$(free_port)
mkdir -p "$tmp/pg" "$tmp/sock"
install -m 600 "$tmp/certs/server.key" "$tmp/server.key"
install -m 644 "$tmp/certs/server.crt" "$tmp/server.crt"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$tmp/pg" "$tmp/sock" "$tmp/server.key" "$tmp/server.crt"
fi
"${as_pg[@]}" "$pgbin/initdb" -D "$tmp/pg" -U postgres --auth-local=trust --auth-host=reject \
  --no-sync >/dev/null
cat >>"$tmp/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$tmp/sock'
ssl = on
ssl_cert_file = '$tmp/server.crt'
ssl_key_file = '$tmp/server.key'
password_encryption = 'scram-sha-256'
fsync = off
CONF
cat >"$tmp/pg/pg_hba.conf" <<HBA
local   all  postgres                trust
hostssl all  all       127.0.0.1/32  scram-sha-256
HBA
"${as_pg[@]}" "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg/server.log" -w start >/dev/null
echo "PostgreSQL listening on 127.0.0.1:$port (TLS, SCRAM only)"

step "A SCRAM verifier made by pgwarden, installed with ALTER ROLE"
password=$(openssl rand -base64 18)
verifier=$(printf '%s\n' "$password" | "$pgwarden" hash-password)
echo "pgwarden hash-password -> ${verifier%%\$*}\$<iterations>:<salt>\$<StoredKey>:<ServerKey>"
"$pgbin/psql" -X -q -h "$tmp/sock" -p "$port" -U postgres -d postgres \
  -c "CREATE ROLE demo LOGIN PASSWORD '$verifier'"

step "psql logs in as demo: sslmode=verify-full, channel_binding=require"
PGPASSWORD=$password "$pgbin/psql" -X \
  "host=localhost port=$port user=demo dbname=postgres sslmode=verify-full sslrootcert=$tmp/certs/ca.crt channel_binding=require" \
  -c "SELECT current_user, s.version AS tls, s.cipher
        FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()"

step "pgwarden check on every example configuration"
export PGWARDEN_CERT_DIR=$tmp/certs
export APP_DB_PASSWORD=example PGWARDEN_ADMIN_PASSWORD=example PGWARDEN_JWT_SECRET=example-only-hs256-secret-of-32-bytes-or-more
for f in examples/*.toml; do
  "$pgwarden" check -c "$f" | tail -n 1
done

step "A broken configuration is refused with file:line errors"
cat >"$tmp/broken.toml" <<TOML
[[listener]]
name = "main"
listen = "127.0.0.1:6432"
backend = "app"
tls = "disable"
auth = ["cert"]
colour = "blue"

[backend.app]
address = "127.0.0.1:$port"
password = "\${PGWARDEN_DEMO_UNSET}"
TOML
"$pgwarden" check -c "$tmp/broken.toml" || echo "(exit status $?)"

step "Done: the proxy server itself lands in a later issue; everything above was real."
