// Upstream TLS for one backend: the OpenSSL client context pgwarden uses to connect to a
// PostgreSQL server, with strict verification, and the text that explains a failed
// handshake.
//
// Contract:
// - UpstreamTls::create() is only for backends with tls = verify-full or verify-ca (what to
//   do with "disable" is the caller's business; create() refuses it). It returns a message
//   naming the file and the OS/OpenSSL reason when tls_ca or the client certificate/key
//   cannot be loaded; it never throws and never prompts for a pass phrase.
// - The chain is always verified (SSL_VERIFY_PEER, TLS server purpose): against tls_ca when
//   set, else against OpenSSL's default trust store (the system CA certificates). verify-full
//   also checks the name: a DNS tls_server_name against the certificate's DNS SANs (the CN
//   only when there is no DNS SAN, as libpq does; wildcards only as a whole left-most label),
//   an IP literal against its IP address SANs. verify-ca checks no name.
// - prepare() must be called on every SSL* made from context() before the handshake: it sets
//   SNI (only for a DNS name: RFC 6066 forbids IP literals in SNI) and the expected name. An
//   SSL* that was not prepared would still verify the chain but not the name.
// - TLS 1.2 minimum, AEAD/ECDHE-only TLS 1.2 ciphers, no compression, no renegotiation, ALPN
//   "postgresql" offered (required by PostgreSQL 17 for direct TLS, ignored by older
//   servers), the client certificate when configured.
// - Client-side session caching is enabled (SSL_SESS_CACHE_CLIENT) without the internal
//   store, which a client never looks up: to resume, keep SSL_get1_session() of a finished
//   connection and SSL_set_session() it on the next one.
// - Immutable after creation, shared as shared_ptr<const UpstreamTls>; every SSL* holds its
//   own reference on context().
#pragma once

#include <openssl/ssl.h>

#include <expected>
#include <memory>
#include <string>

#include "config/config.h"

namespace pgwarden::tls {

class UpstreamTls {
 public:
  static std::expected<std::shared_ptr<const UpstreamTls>, std::string> create(
      const config::Backend& backend);

  UpstreamTls(const UpstreamTls&) = delete;
  UpstreamTls& operator=(const UpstreamTls&) = delete;
  ~UpstreamTls();

  SSL_CTX* context() const { return ctx_.get(); }

  // Configures a fresh SSL* (from context()) for one connection: SNI and, for verify-full,
  // the host name or IP address that the certificate must carry. False when OpenSSL refuses
  // a setting; the connection must then not proceed.
  bool prepare(SSL* ssl) const;

  const std::string& server_name() const { return server_name_; }
  bool server_name_is_ip() const { return server_name_is_ip_; }
  config::BackendTls mode() const { return mode_; }

 private:
  struct CtxFree {
    void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  };
  UpstreamTls() = default;

  std::unique_ptr<SSL_CTX, CtxFree> ctx_;
  std::string server_name_;
  bool server_name_is_ip_ = false;
  config::BackendTls mode_ = config::BackendTls::VerifyFull;
};

// After a failed handshake (either side), a human-readable reason for the log and for the
// client's FATAL 08006 message: "certificate verify failed: hostname mismatch (expected
// db.example.com)", "certificate verify failed: unable to get local issuer certificate", or
// the OpenSSL reason of `openssl_error` (the first error code the failed call left, e.g. from
// ERR_get_error() or an Asio ssl error_code), e.g. "tlsv13 alert certificate required". It
// names certificates by subject and names only, never contains key material, and is ASCII.
std::string handshake_failure_reason(const SSL* ssl, unsigned long openssl_error);

}  // namespace pgwarden::tls
