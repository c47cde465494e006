// tls-server-end-point channel binding (RFC 5929 section 4): the hash of the server's DER
// certificate, with the hash function of the certificate's signature algorithm, MD5 and SHA-1
// upgraded to SHA-256. This is what PostgreSQL (be_tls_get_certificate_hash) and libpq
// (pgtls_get_peer_certificate_hash) put into SCRAM-SHA-256-PLUS, so both the ScramServer (our
// own certificate) and the ScramClient (the upstream's certificate) use it.
//
// The result is 32, 48 or 64 bytes (SHA-256, SHA-384 or SHA-512 signatures; RSA-PSS uses its
// declared hash). std::nullopt when no hash is defined for the signature algorithm (Ed25519,
// Ed448: RFC 5929 leaves them undefined and PostgreSQL refuses them too) or on failure; the
// caller then does not offer or use SCRAM-SHA-256-PLUS (or fails if channel binding is
// required).
#pragma once

#include <openssl/x509.h>

#include <cstddef>
#include <optional>
#include <vector>

namespace pgwarden::crypto {

std::optional<std::vector<std::byte>> tls_server_end_point(const X509* cert);

}  // namespace pgwarden::crypto
