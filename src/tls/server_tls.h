// Client-facing TLS for one listener: the OpenSSL contexts that terminate the TLS of
// PostgreSQL clients (after SSLRequest, or directly for PostgreSQL 17 sslnegotiation=direct).
//
// Contract:
// - ServerTls::create() builds everything from a config::Listener or returns a message that
//   names the file and gives the OS/OpenSSL reason (unreadable file, bad PEM, encrypted key,
//   key not matching its certificate). It never throws and never prompts for a pass phrase.
// - A ServerTls is immutable once created and is shared as shared_ptr<const ServerTls>.
//   Reload (SIGHUP) builds a new one with create(); connections already running keep the
//   contexts they use alive: every SSL* holds a reference on default_context(), which owns
//   the SNI contexts (and SSL_set_SSL_CTX takes a reference on the one it switches to), so
//   an SSL* may even outlive the ServerTls it came from.
// - Every handshake starts with SSL_new(default_context()). A servername callback then
//   switches to the SNI certificate whose server_names match the client's SNI: exact names
//   first (ASCII case-insensitive, one trailing dot ignored), then "*.suffix" patterns, which
//   match exactly one non-empty label; first entry in file order wins. No SNI, or no match:
//   the default certificate. OpenSSL keeps the client's SNI; describe() (tls_info.h) reports
//   it.
// - Every context (default and per-name) has identical protocol and verification settings:
//   the same trust store object, client CA list, verify mode and session id context, because
//   OpenSSL verifies the client certificate with the context it switched to. A client
//   certificate requirement therefore cannot be bypassed by choosing another SNI name.
// - Protocol: TLS 1.2 minimum (1.3 when tls_min_version says so), AEAD/ECDHE-only TLS 1.2
//   ciphers, server cipher preference, no compression, no renegotiation, no session
//   resumption (neither tickets nor the session cache: a resumed session would skip client
//   certificate verification, including against a CA that a reload has since removed; and
//   PostgreSQL connections are long-lived, so resumption gains nothing).
// - ALPN: a client that offers "postgresql" gets it; a client that offers an ALPN list
//   without it fails the handshake with a fatal no_application_protocol alert (as PostgreSQL
//   17 does); a client that offers no ALPN at all is accepted (libpq before 17). The server
//   layer must additionally require alpn_is_postgresql() on direct-TLS connections.
// - Client certificates: with ClientCertMode::None no certificate is requested. Optional
//   requests one and verifies it if sent (a bad one fails the handshake); Require also fails
//   the handshake when none is sent. The verification purpose is TLS client (a certificate
//   whose extendedKeyUsage lacks clientAuth is refused).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"

namespace pgwarden::tls {

// The ALPN protocol name of PostgreSQL (PostgreSQL 17, protocol.h PG_ALPN_PROTOCOL).
inline constexpr std::string_view kAlpnPostgresql = "postgresql";

// The session id context shared by every pgwarden server context.
inline constexpr std::string_view kSessionIdContext = "pgwarden";

class ServerTls {
 public:
  // Builds the contexts for `listener`. Error when the listener has TLS disabled, lacks
  // tls_cert/tls_key, requests client certificates without client_ca, or when any file
  // cannot be loaded.
  static std::expected<std::shared_ptr<const ServerTls>, std::string> create(
      const config::Listener& listener);

  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;
  ~ServerTls();

  // Start every handshake with SSL_new(default_context()).
  SSL_CTX* default_context() const { return default_.get(); }

  // The context that a handshake with SNI `server_name` ends up using (default_context() when
  // no SNI entry matches). For diagnostics and tests; the handshake selects by itself.
  SSL_CTX* context_for(std::string_view server_name) const;

  // Number of [[listener.sni]] contexts.
  std::size_t sni_context_count() const;

  config::ClientCertMode client_cert_mode() const { return client_cert_; }
  const std::string& listener_name() const { return listener_name_; }

  struct SniTable;  // owned by default_context() (see the .cc)

 private:
  struct CtxFree {
    void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
  };
  ServerTls() = default;

  std::unique_ptr<SSL_CTX, CtxFree> default_;
  const SniTable* sni_ = nullptr;  // owned by default_'s ex_data; lives as long as default_
  config::ClientCertMode client_cert_ = config::ClientCertMode::None;
  std::string listener_name_;
};

// True when the handshake on `ssl` negotiated ALPN "postgresql" (either side of the
// connection). False when no ALPN was negotiated.
bool alpn_is_postgresql(const SSL* ssl);

}  // namespace pgwarden::tls
