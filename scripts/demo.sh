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
  [ -n "${pw_pid:-}" ] && kill "$pw_pid" 2>/dev/null || true
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

step "The upstream role pgwarden logs in as (the client never sees this password)"
app_password=$(openssl rand -base64 18)
"$pgbin/psql" -X -q -h "$tmp/sock" -p "$port" -U postgres -d postgres \
  -c "CREATE ROLE app LOGIN PASSWORD '$app_password'"
echo "role app created on PostgreSQL (password in \$APP_DB_PASSWORD for pgwarden only)"

step "A pgwarden user: alice, in a users file made with pgwarden hash-password"
alice_password=$(openssl rand -base64 18)
printf '%s\n' "$alice_password" | "$pgwarden" hash-password alice >"$tmp/users.txt"
chmod 600 "$tmp/users.txt"
sed -E 's/\$[^$]*\$[^"]*/$<salt>$<keys>/' "$tmp/users.txt"

step "pgwarden in front of it: TLS for clients, SCRAM users, verify-full upstream"
pw_port=$(free_port)
cat >"$tmp/pgwarden.toml" <<TOML
[server]
workers = 2
shutdown_grace = "5s"

[audit]
path = "$tmp/audit.jsonl"

[[listener]]
name = "main"
listen = "127.0.0.1:$pw_port"
backend = "app"
tls = "require"
tls_cert = "$tmp/certs/server.crt"
tls_key = "$tmp/certs/server.key"
auth = ["scram"]
users_file = "$tmp/users.txt"

[backend.app]
address = "localhost:$port"
tls = "verify-full"
tls_ca = "$tmp/certs/ca.crt"
credentials = "static"
user = "app"
password = "\${APP_DB_PASSWORD}"
TOML
sed -n '/\[\[listener\]\]/,$p' "$tmp/pgwarden.toml"
APP_DB_PASSWORD=$app_password "$pgwarden" -c "$tmp/pgwarden.toml" 2>"$tmp/pgwarden.log" &
pw_pid=$!
for _ in $(seq 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$pw_port") 2>/dev/null; then break; fi
  sleep 0.1
done
sed 's/^/  log: /' "$tmp/pgwarden.log"

step "psql connects through pgwarden as alice (verify-full, channel_binding=require)"
PGPASSWORD=$alice_password "$pgbin/psql" -X \
  "host=localhost port=$pw_port user=alice dbname=postgres sslmode=verify-full sslrootcert=$tmp/certs/ca.crt channel_binding=require application_name=demo" \
  -c "SELECT current_user AS upstream_role, s.version AS upstream_tls, a.application_name
        FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.pid = pg_backend_pid()"

step "A wrong password is refused"
PGPASSWORD=wrong "$pgbin/psql" -X \
  "host=localhost port=$pw_port user=alice dbname=postgres sslmode=verify-full sslrootcert=$tmp/certs/ca.crt" \
  -c "SELECT 1" 2>&1 || true

step "The audit log names alice behind every session"
kill -TERM "$pw_pid"
wait "$pw_pid" || true
cat "$tmp/audit.jsonl"

step "pgwarden check on every example configuration"
export PGWARDEN_CERT_DIR=$tmp/certs
export APP_DB_PASSWORD=example PGWARDEN_ADMIN_PASSWORD=example PGWARDEN_JWT_SECRET=example-only-hs256-secret-of-32-bytes-or-more
for f in examples/*.toml; do
  "$pgwarden" check -c "$f" | tail -n 1
done

step "Done."
