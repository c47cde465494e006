// Internal helpers of pgwarden_tls (not part of its public API; other layers include
// server_tls.h, upstream_tls.h, tls_info.h and cert_identity.h): owning pointers for OpenSSL
// objects, draining the thread's OpenSSL error queue into text, and loading PEM files.
//
// Contract:
// - Every loader reads the whole file itself (bounded by kMaxPemFileBytes) and parses it from
//   memory, so every error names the file and gives the OS or OpenSSL reason; nothing throws.
// - Private keys are read into a buffer that is wiped (OPENSSL_cleanse) before it is freed,
//   including the intermediate buffers of a file that grows while being read. Encrypted keys
//   are refused without ever prompting for a pass phrase (the default OpenSSL callback would
//   block on the terminal).
// - Errors never contain file content, only paths and reasons.
// - Every function leaves the calling thread's OpenSSL error queue empty.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <cstddef>
#include <expected>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::tls::detail {

// TLS 1.2 cipher suites for both directions: ECDHE key exchange (forward secrecy) with AEAD
// ciphers only, Mozilla's "intermediate" list without DHE (no DH parameters are configured).
// TLS 1.3 uses OpenSSL's default suites, which are all AEAD.
inline constexpr const char* kTls12CipherList =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// A CA bundle of a few hundred roots is about 200 KiB; anything far larger is not PEM.
inline constexpr std::size_t kMaxPemFileBytes = 8 * 1024 * 1024;

struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct X509StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct X509NameStackFree {
  void operator()(STACK_OF(X509_NAME) * p) const { sk_X509_NAME_pop_free(p, X509_NAME_free); }
};

using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreFree>;
using X509NameStackPtr = std::unique_ptr<STACK_OF(X509_NAME), X509NameStackFree>;

// Empties this thread's OpenSSL error queue and returns the reasons it held, oldest first,
// joined by ": " without repeats; `fallback` when the queue was empty.
std::string drain_errors(std::string_view fallback = "unknown OpenSSL error");

// The reason text of one packed OpenSSL error code ("wrong version number"), or a generic
// text naming the code when OpenSSL has none.
std::string error_reason(unsigned long code);

// Every certificate in a PEM file, in file order (leaf first for a chain file). Other PEM
// blocks (keys, parameters) are skipped. Error: unreadable file, a broken certificate block,
// or no certificate at all.
std::expected<std::vector<X509Ptr>, std::string> load_certificates(
    const std::filesystem::path& path);

// The one private key of a PEM file (PKCS#8, traditional RSA/EC). Error: unreadable file,
// no key, or an encrypted key.
std::expected<EvpPkeyPtr, std::string> load_private_key(const std::filesystem::path& path);

// Installs a certificate chain file (leaf first, then intermediates) and its key into ctx and
// checks that the key belongs to the leaf.
std::expected<void, std::string> use_certificate_and_key(SSL_CTX* ctx,
                                                         const std::filesystem::path& cert,
                                                         const std::filesystem::path& key);

// A trust store holding every certificate of a CA file, and (when names is non-null) the
// subject names of those certificates, for SSL_CTX_set_client_CA_list.
std::expected<X509StorePtr, std::string> load_ca_store(const std::filesystem::path& path,
                                                       X509NameStackPtr* names);

// ASCII-lower-cased copy; certificate and SNI host names are compared case-insensitively.
std::string ascii_lower(std::string_view s);

// True for an IPv4 or IPv6 literal (no brackets, no zone).
bool is_ip_literal(std::string_view s);

}  // namespace pgwarden::tls::detail
