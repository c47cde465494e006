#include "tls/upstream_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/openssl_util.h"
#include "tls/server_tls.h"
#include "tls/tls_info.h"

namespace pgwarden::tls {

UpstreamTls::~UpstreamTls() = default;

std::expected<std::shared_ptr<const UpstreamTls>, std::string> UpstreamTls::create(
    const config::Backend& backend) {
  const std::string where = "backend \"" + backend.name + "\": ";
  auto fail = [&](const std::string& why) { return std::unexpected(where + why); };
  if (backend.tls == config::BackendTls::Disable) {
    return fail("TLS is disabled");
  }
  std::string name =
      backend.tls_server_name.empty() ? backend.address.host : backend.tls_server_name;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);  // "[::1]" as written in an address
  }
  if (name.empty() || name.find('\0') != std::string::npos) {
    return fail("no usable tls_server_name");
  }

  auto tls = std::shared_ptr<UpstreamTls>(new UpstreamTls());
  tls->mode_ = backend.tls;
  tls->server_name_is_ip_ = detail::is_ip_literal(name);
  tls->server_name_ = std::move(name);

  ERR_clear_error();
  tls->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* c = tls->ctx_.get();
  if (c == nullptr) {
    return fail("cannot create a TLS context: " + detail::drain_errors());
  }
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  // Idle upstream connections give their record buffers back (see server_tls.cc).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  // ALPN wire format: one length byte, then the name.
  std::string alpn(1, static_cast<char>(kAlpnPostgresql.size()));
  alpn += kAlpnPostgresql;
  const bool ok =
      SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) == 1 &&
      SSL_CTX_set_cipher_list(c, detail::kTls12CipherList) == 1 &&
      X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(c), X509_PURPOSE_SSL_SERVER) == 1 &&
      // SSL_CTX_set_alpn_protos returns 0 on success.
      SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(alpn.data()),
                              static_cast<unsigned int>(alpn.size())) == 0;
  if (!ok) {
    return fail("cannot configure a TLS context: " + detail::drain_errors());
  }
  // Never SSL_VERIFY_NONE: an unverified upstream is exactly the hole pgwarden closes.
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);

  if (backend.tls_ca) {
    auto store = detail::load_ca_store(*backend.tls_ca, nullptr);
    if (!store) {
      return fail("tls_ca: " + store.error());
    }
    SSL_CTX_set_cert_store(c, store->release());  // takes ownership
  } else if (SSL_CTX_set_default_verify_paths(c) != 1) {
    return fail("cannot load the system trust store: " + detail::drain_errors());
  }

  if (backend.tls_client_cert.has_value() != backend.tls_client_key.has_value()) {
    return fail("tls_client_cert and tls_client_key must be set together");
  }
  if (backend.tls_client_cert) {
    if (auto r =
            detail::use_certificate_and_key(c, *backend.tls_client_cert, *backend.tls_client_key);
        !r) {
      return fail(r.error());
    }
  }
  ERR_clear_error();
  return std::shared_ptr<const UpstreamTls>(std::move(tls));
}

bool UpstreamTls::prepare(SSL* ssl) const {
  if (ssl == nullptr) {
    return false;
  }
  bool ok = true;
  // RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted in HostName".
  if (!server_name_is_ip_) {
    ok = SSL_set_tlsext_host_name(ssl, server_name_.c_str()) == 1;
  }
  if (ok && mode_ == config::BackendTls::VerifyFull) {
    if (server_name_is_ip_) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name_.c_str()) == 1;
    } else {
      // "*.example.com" matches "db.example.com"; "db*.example.com" matches nothing.
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, server_name_.c_str()) == 1;
    }
  }
  if (!ok) {
    ERR_clear_error();
  }
  return ok;
}

namespace {

// The certificate the peer presented, if it got that far. On the client side a certificate
// that failed verification is only in the peer chain (OpenSSL stores the peer certificate
// after a successful verification).
const X509* presented_certificate(const SSL* ssl) {
  if (const X509* peer = SSL_get0_peer_certificate(ssl); peer != nullptr) {
    return peer;
  }
  if (SSL_is_server(ssl) == 0) {
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    if (chain != nullptr && sk_X509_num(chain) > 0) {
      return sk_X509_value(chain, 0);
    }
  }
  return nullptr;
}

}  // namespace

std::string handshake_failure_reason(const SSL* ssl, unsigned long openssl_error) {
  if (ssl != nullptr) {
    const long result = SSL_get_verify_result(ssl);
    if (result != X509_V_OK) {
      std::string out = "certificate verify failed: ";
      out += X509_verify_cert_error_string(result);
      // Declared for a non-const SSL*; only read here.
      X509_VERIFY_PARAM* param = SSL_get0_param(const_cast<SSL*>(ssl));
      if (result == X509_V_ERR_HOSTNAME_MISMATCH) {
        if (const char* host = X509_VERIFY_PARAM_get0_host(param, 0); host != nullptr) {
          out += " (expected ";
          out += host;
          out += ")";
        }
      } else if (result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        if (char* ip = X509_VERIFY_PARAM_get1_ip_asc(param); ip != nullptr) {
          out += " (expected ";
          out += ip;
          out += ")";
          OPENSSL_free(ip);
        }
      }
      if (const X509* cert = presented_certificate(ssl); cert != nullptr) {
        if (auto subject = subject_rfc2253(cert)) {
          out += "; certificate subject \"" + *subject + "\"";
        }
      }
      return out;
    }
  }
  if (openssl_error != 0) {
    return detail::error_reason(openssl_error);
  }
  return "TLS handshake failed: connection closed by the peer";
}

}  // namespace pgwarden::tls
