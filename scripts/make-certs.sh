#!/bin/sh
# make-certs.sh DIR: generate a development PKI for pgwarden into DIR with the openssl CLI.
#
#   ca.crt, ca.key                 server CA (use as a backend tls_ca and as the clients'
#                                  sslrootcert)
#   server.crt, server.key         listener certificate: CN=localhost,
#                                  SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   reporting.crt, reporting.key   SNI certificate: CN/SAN reporting.localhost
#   clients-ca.crt, clients-ca.key client CA (a listener's client_ca)
#   client.crt, client.key         client certificate: CN=alice,
#                                  SAN email:alice@example.com, DNS:alice.clients.localhost
#
# Keys are EC P-256 and mode 0600. For development and tests only: the CA keys sit next to
# the certificates. Existing files in DIR are overwritten.
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
days=${PGWARDEN_CERT_DAYS:-365}
mkdir -p "$dir"
umask 077

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$1.key" 2>/dev/null
  chmod 600 "$dir/$1.key"
}

ca() {  # name, subject
  key "$1"
  openssl req -x509 -new -key "$dir/$1.key" -subj "$2" -days "$days" -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/$1.crt"
}

leaf() {  # name, issuer, subject, subjectAltName, extendedKeyUsage
  key "$1"
  openssl req -new -key "$dir/$1.key" -subj "$3" -out "$dir/$1.csr"
  ext=$(mktemp)
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$5" "$4" >"$ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/$2.crt" -CAkey "$dir/$2.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$ext" -out "$dir/$1.crt" 2>/dev/null
  rm -f "$ext" "$dir/$1.csr"
}

ca ca "/CN=pgwarden development CA"
leaf server ca "/CN=localhost" "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
leaf reporting ca "/CN=reporting.localhost" "DNS:reporting.localhost" serverAuth
ca clients-ca "/CN=pgwarden development client CA"
leaf client clients-ca "/CN=alice" "email:alice@example.com,DNS:alice.clients.localhost" clientAuth
rm -f "$dir"/*.srl
chmod 644 "$dir"/*.crt
echo "certificates written to $dir"
