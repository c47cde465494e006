#include "tls/server_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <unordered_map>
#include <vector>

#include "config/values.h"
#include "tls/openssl_util.h"

namespace pgwarden::tls {

using detail::SslCtxPtr;

// The SNI contexts of one ServerTls. It is owned by the default context (ex_data, freed with
// it), not by the ServerTls, so that a handshake that started on the default context can
// still switch after the ServerTls itself was dropped by a reload.
struct ServerTls::SniTable {
  std::vector<SslCtxPtr> contexts;
  std::unordered_map<std::string, SSL_CTX*> exact;     // lower-case name -> context
  std::unordered_map<std::string, SSL_CTX*> wildcard;  // lower-case suffix of "*.suffix"

  SSL_CTX* find(std::string_view server_name) const {
    std::string name = detail::ascii_lower(server_name);
    if (!name.empty() && name.back() == '.') {
      name.pop_back();  // "db.example.com." names the same host
    }
    if (name.empty()) {
      return nullptr;
    }
    if (const auto it = exact.find(name); it != exact.end()) {
      return it->second;
    }
    // "*.example.com" covers exactly one non-empty label in front of "example.com".
    const auto dot = name.find('.');
    if (dot == std::string::npos || dot == 0) {
      return nullptr;
    }
    if (const auto it = wildcard.find(name.substr(dot + 1)); it != wildcard.end()) {
      return it->second;
    }
    return nullptr;
  }
};

namespace {

void free_sni_table(void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
                    void* /*argp*/) {
  delete static_cast<ServerTls::SniTable*>(ptr);
}

int sni_table_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_sni_table);
  return index;
}

int on_servername(SSL* ssl, int* alert, void* arg) {
  const auto* table = static_cast<const ServerTls::SniTable*>(arg);
  // OpenSSL has already refused a host_name containing a NUL byte.
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr || table == nullptr) {
    return SSL_TLSEXT_ERR_OK;  // no SNI: the default certificate
  }
  SSL_CTX* ctx = table->find(name);
  if (ctx == nullptr) {
    return SSL_TLSEXT_ERR_OK;  // unknown name: the default certificate
  }
  // SSL_set_SSL_CTX takes a reference on ctx, so it stays valid for this connection.
  if (SSL_set_SSL_CTX(ssl, ctx) == nullptr) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return SSL_TLSEXT_ERR_OK;
}

// Selects "postgresql" from the client's ALPN list. A client that sends ALPN without it is
// speaking another protocol to us (e.g. an HTTP client aimed at the wrong port, or a
// cross-protocol attack): fail the handshake, as PostgreSQL 17 does. OpenSSL only calls this
// when the client sent ALPN.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  unsigned int i = 0;
  while (i < inlen) {
    const unsigned int len = in[i];
    if (len == 0 || len > inlen - i - 1) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;  // malformed list
    }
    if (len == kAlpnPostgresql.size() &&
        std::memcmp(in + i + 1, kAlpnPostgresql.data(), len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// What every context of one listener shares; see the header for why it must be identical.
struct CommonSettings {
  int min_version = TLS1_2_VERSION;
  int verify_mode = SSL_VERIFY_NONE;
  X509_STORE* store = nullptr;                     // set when client certificates are requested
  const STACK_OF(X509_NAME) * ca_names = nullptr;  // likewise
};

std::expected<SslCtxPtr, std::string> make_context(const CommonSettings& common,
                                                   const std::filesystem::path& cert,
                                                   const std::filesystem::path& key) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    return std::unexpected("cannot create a TLS context: " + detail::drain_errors());
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
  // No resumption (see the header): no session cache, and no TLS 1.3 tickets either.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  // An idle connection gives its 2 x 16 KiB record buffers back (sessions are long-lived
  // and mostly idle; the buffers are allocated again for the next record).
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  bool ok = SSL_CTX_set_min_proto_version(c, common.min_version) == 1 &&
            SSL_CTX_set_num_tickets(c, 0) == 1 &&
            SSL_CTX_set_cipher_list(c, detail::kTls12CipherList) == 1 &&
            SSL_CTX_set_session_id_context(
                c, reinterpret_cast<const unsigned char*>(kSessionIdContext.data()),
                static_cast<unsigned int>(kSessionIdContext.size())) == 1 &&
            X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(c), X509_PURPOSE_SSL_CLIENT) == 1;
  if (ok && common.store != nullptr) {
    // One store object for every context of the listener (reference counted).
    SSL_CTX_set1_cert_store(c, common.store);
    STACK_OF(X509_NAME)* names = SSL_dup_CA_list(const_cast<STACK_OF(X509_NAME)*>(common.ca_names));
    ok = names != nullptr;
    if (ok) {
      SSL_CTX_set_client_CA_list(c, names);  // takes ownership
    }
  }
  if (!ok) {
    return std::unexpected("cannot configure a TLS context: " + detail::drain_errors());
  }
  SSL_CTX_set_verify(c, common.verify_mode, nullptr);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  if (auto r = detail::use_certificate_and_key(c, cert, key); !r) {
    return std::unexpected(r.error());
  }
  return ctx;
}

}  // namespace

ServerTls::~ServerTls() = default;

std::expected<std::shared_ptr<const ServerTls>, std::string> ServerTls::create(
    const config::Listener& listener) {
  const std::string where = "listener \"" + listener.name + "\": ";
  auto fail = [&](const std::string& why) { return std::unexpected(where + why); };
  if (listener.tls == config::ListenerTls::Disable) {
    return fail("TLS is disabled");
  }
  if (!listener.tls_cert || !listener.tls_key) {
    return fail("tls_cert and tls_key are required for TLS");
  }
  if (sni_table_index() < 0) {
    return fail("cannot allocate OpenSSL ex_data index: " + detail::drain_errors());
  }

  CommonSettings common;
  common.min_version =
      listener.tls_min_version == config::TlsVersion::Tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  detail::X509StorePtr store;
  detail::X509NameStackPtr ca_names;
  if (listener.client_cert != config::ClientCertMode::None) {
    if (!listener.client_ca) {
      return fail("client certificates are requested but client_ca is not set");
    }
    auto loaded = detail::load_ca_store(*listener.client_ca, &ca_names);
    if (!loaded) {
      return fail("client_ca: " + loaded.error());
    }
    store = std::move(*loaded);
    common.store = store.get();
    common.ca_names = ca_names.get();
    common.verify_mode = SSL_VERIFY_PEER;
    if (listener.client_cert == config::ClientCertMode::Require) {
      common.verify_mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
  }

  auto tls = std::shared_ptr<ServerTls>(new ServerTls());
  tls->client_cert_ = listener.client_cert;
  tls->listener_name_ = listener.name;
  auto def = make_context(common, *listener.tls_cert, *listener.tls_key);
  if (!def) {
    return fail(def.error());
  }
  tls->default_.reset(def->release());

  auto table = std::make_unique<SniTable>();
  for (std::size_t i = 0; i < listener.sni.size(); ++i) {
    const config::SniCertificate& entry = listener.sni[i];
    const std::string which = "sni entry " + std::to_string(i + 1) + ": ";
    auto ctx = make_context(common, entry.cert, entry.key);
    if (!ctx) {
      return fail(which + ctx.error());
    }
    SSL_CTX* raw = ctx->get();
    table->contexts.push_back(std::move(*ctx));
    if (entry.server_names.empty()) {
      return fail(which + "server_names is empty");
    }
    for (const std::string& pattern : entry.server_names) {
      if (!config::is_valid_dns_name(pattern, /*allow_wildcard=*/true)) {
        return fail(which + "\"" + pattern + "\" is not a host name or *.domain pattern");
      }
      std::string name = detail::ascii_lower(pattern);
      const bool is_wildcard = name.starts_with("*.");
      auto& map = is_wildcard ? table->wildcard : table->exact;
      // Two certificates for one name would make the choice depend on file order.
      if (!map.emplace(is_wildcard ? name.substr(2) : name, raw).second) {
        return fail(which + "server name \"" + pattern + "\" is listed more than once");
      }
    }
  }
  if (!table->contexts.empty()) {
    if (SSL_CTX_set_ex_data(tls->default_.get(), sni_table_index(), table.get()) != 1) {
      return fail("cannot attach SNI contexts: " + detail::drain_errors());
    }
    tls->sni_ = table.release();  // now owned by default_
    SSL_CTX_set_tlsext_servername_callback(tls->default_.get(), on_servername);
    SSL_CTX_set_tlsext_servername_arg(tls->default_.get(), const_cast<SniTable*>(tls->sni_));
  }
  return std::shared_ptr<const ServerTls>(std::move(tls));
}

SSL_CTX* ServerTls::context_for(std::string_view server_name) const {
  if (sni_ != nullptr) {
    if (SSL_CTX* ctx = sni_->find(server_name); ctx != nullptr) {
      return ctx;
    }
  }
  return default_.get();
}

std::size_t ServerTls::sni_context_count() const {
  return sni_ == nullptr ? 0 : sni_->contexts.size();
}

bool alpn_is_postgresql(const SSL* ssl) {
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  return proto != nullptr && len == kAlpnPostgresql.size() &&
         std::memcmp(proto, kAlpnPostgresql.data(), len) == 0;
}

}  // namespace pgwarden::tls
