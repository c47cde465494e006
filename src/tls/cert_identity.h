// The identity a client certificate stands for, for the `cert` authentication method
// (SPEC section 3, listener key cert_identity = "cn" | "san-email" | "san-dns").
//
// Contract:
// - certificate_identity() does not verify anything: pass only a certificate that the TLS
//   handshake verified against client_ca (verified_peer_identity() does both steps).
// - Cn: the subject's commonName, converted to UTF-8. SanEmail: the first rfc822Name of the
//   subjectAltName extension. SanDns: the first dNSName, lower-cased (DNS names are
//   case-insensitive, RFC 4343, so "Host.Example" and "host.example" are one identity).
// - Fail closed, with an error rather than a guess, whenever the identity is ambiguous or
//   could be crafted to look like another one in a grant or a log: no such field; more than
//   one CN; more than one subjectAltName extension; an empty value; a value with an embedded
//   NUL (the classic "admin\0.evil.example" truncation), control characters or invalid UTF-8;
//   SAN values that are not printable ASCII without spaces. The first matching SAN decides:
//   if it is invalid the result is an error, never the next one.
// - Error texts describe the fault and never echo the certificate's bytes.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <expected>
#include <string>

#include "config/config.h"

namespace pgwarden::tls {

std::expected<std::string, std::string> certificate_identity(const X509* cert,
                                                             config::CertIdentity how);

// The identity of the client certificate of a finished server-side handshake: error when the
// client sent no certificate or it did not verify, else certificate_identity().
std::expected<std::string, std::string> verified_peer_identity(const SSL* ssl,
                                                               config::CertIdentity how);

}  // namespace pgwarden::tls
