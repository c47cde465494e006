// What a finished TLS handshake negotiated, for the audit log (SPEC section 7, field `tls`)
// and the admin console.
//
// Contract:
// - describe() reads a connection whose handshake has completed (either side); on an SSL*
//   without a completed handshake the fields are empty.
// - `client_subject` is set only on the server side, only when the client presented a
//   certificate and it verified (SSL_get_verify_result == X509_V_OK). An unverified
//   certificate is never reported as an identity.
// - Every string is printable ASCII: the subject is RFC 2253 with control characters and
//   non-ASCII bytes escaped (\XX), so certificate contents chosen by a client cannot inject
//   lines or invalid UTF-8 into a log; likewise the SNI, in which any byte outside printable
//   ASCII (and the backslash) is written as \xNN.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <optional>
#include <string>

namespace pgwarden::tls {

struct TlsInfo {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // OpenSSL name: "TLS_AES_256_GCM_SHA384", "ECDHE-RSA-AES128-GCM-SHA256"
  std::string sni;      // server name the client sent; empty when none
  std::optional<std::string> client_subject;  // RFC 2253 subject of a verified client cert
};

TlsInfo describe(const SSL* ssl);

// The RFC 2253 one-line subject of `cert` ("CN=alice,O=Example"), ASCII only; nullopt when it
// cannot be printed.
std::optional<std::string> subject_rfc2253(const X509* cert);

}  // namespace pgwarden::tls
