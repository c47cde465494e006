#include "tls/tls_info.h"

#include <openssl/bio.h>
#include <openssl/err.h>

#include "tls/openssl_util.h"

namespace pgwarden::tls {
namespace {

// OpenSSL refuses a NUL in the client's host_name but accepts any other byte: escape what is
// not printable ASCII before the name reaches a log line.
std::string printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c > 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> subject_rfc2253(const X509* cert) {
  if (cert == nullptr) {
    return std::nullopt;
  }
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) {
    ERR_clear_error();
    return std::nullopt;
  }
  // XN_FLAG_RFC2253 includes ASN1_STRFLGS_ESC_CTRL and ESC_MSB: the output is ASCII.
  if (X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return std::nullopt;
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len < 0 || (len > 0 && data == nullptr)) {
    return std::nullopt;
  }
  return std::string(data, static_cast<std::size_t>(len));
}

TlsInfo describe(const SSL* ssl) {
  TlsInfo info;
  if (ssl == nullptr || SSL_is_init_finished(ssl) == 0) {
    return info;
  }
  info.version = SSL_get_version(ssl);
  if (const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl); cipher != nullptr) {
    info.cipher = SSL_CIPHER_get_name(cipher);
  }
  if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name); sni != nullptr) {
    info.sni = printable(sni);
  }
  if (SSL_is_server(ssl) != 0 && SSL_get_verify_result(ssl) == X509_V_OK) {
    if (const X509* peer = SSL_get0_peer_certificate(ssl); peer != nullptr) {
      info.client_subject = subject_rfc2253(peer);
    }
  }
  return info;
}

}  // namespace pgwarden::tls
