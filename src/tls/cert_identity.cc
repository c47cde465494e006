#include "tls/cert_identity.h"

#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include <cstddef>
#include <memory>
#include <string_view>

#include "tls/openssl_util.h"

namespace pgwarden::tls {
namespace {

struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) without C0/C1
// control characters, DEL or NUL.
bool is_printable_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f) {
        return false;
      }
      ++i;
      continue;
    }
    std::size_t len = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < len) {
      return false;
    }
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        return false;
      }
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f)) {
      return false;
    }
    i += len;
  }
  return true;
}

// IA5String SAN values (e-mail addresses, DNS names): printable ASCII, no space.
bool is_printable_ascii_token(std::string_view s) {
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) {
      return false;
    }
  }
  return true;
}

std::string_view bytes_of(const ASN1_STRING* s) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
          static_cast<std::size_t>(ASN1_STRING_length(s))};
}

std::expected<std::string, std::string> common_name(const X509* cert) {
  const X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) {
    return std::unexpected("the client certificate has no subject CN");
  }
  // Which of several CNs is "the" name differs between implementations: refuse.
  if (X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
    return std::unexpected("the client certificate has more than one subject CN");
  }
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  if (data == nullptr) {
    return std::unexpected("the client certificate has no subject CN");
  }
  // Converting first also covers BMPString/UniversalString, whose raw bytes contain NULs for
  // every ASCII character; an embedded U+0000 survives the conversion as a NUL byte.
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    ERR_clear_error();
    return std::unexpected("the subject CN of the client certificate is not a valid string");
  }
  std::string cn(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(len));
  OPENSSL_free(utf8);
  if (cn.find('\0') != std::string::npos) {
    return std::unexpected("the subject CN of the client certificate contains a NUL byte");
  }
  if (cn.empty()) {
    return std::unexpected("the subject CN of the client certificate is empty");
  }
  if (!is_printable_utf8(cn)) {
    return std::unexpected(
        "the subject CN of the client certificate contains a NUL, control or invalid "
        "character");
  }
  return cn;
}

std::expected<std::string, std::string> first_san(const X509* cert, int type) {
  const char* what = type == GEN_EMAIL ? "e-mail (rfc822Name)" : "DNS (dNSName)";
  int critical = -1;
  std::unique_ptr<GENERAL_NAMES, GeneralNamesFree> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, &critical, nullptr)));
  if (!names) {
    ERR_clear_error();
    if (critical == -2) {
      return std::unexpected("the client certificate has more than one subjectAltName extension");
    }
    if (critical >= 0) {
      return std::unexpected("the subjectAltName extension of the client certificate is malformed");
    }
    return std::unexpected(std::string("the client certificate has no ") + what +
                           " subjectAltName");
  }
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != type) {
      continue;
    }
    const ASN1_IA5STRING* value = type == GEN_EMAIL ? gn->d.rfc822Name : gn->d.dNSName;
    const std::string_view bytes = bytes_of(value);
    if (bytes.empty()) {
      return std::unexpected(std::string("the first ") + what +
                             " subjectAltName of the client certificate is empty");
    }
    if (bytes.find('\0') != std::string_view::npos) {
      return std::unexpected(std::string("the first ") + what +
                             " subjectAltName of the client certificate contains a NUL byte");
    }
    if (!is_printable_ascii_token(bytes)) {
      return std::unexpected(std::string("the first ") + what +
                             " subjectAltName of the client certificate contains a space, "
                             "control or non-ASCII character");
    }
    return type == GEN_DNS ? detail::ascii_lower(bytes) : std::string(bytes);
  }
  return std::unexpected(std::string("the client certificate has no ") + what + " subjectAltName");
}

}  // namespace

std::expected<std::string, std::string> certificate_identity(const X509* cert,
                                                             config::CertIdentity how) {
  if (cert == nullptr) {
    return std::unexpected("no client certificate");
  }
  switch (how) {
    case config::CertIdentity::Cn:
      return common_name(cert);
    case config::CertIdentity::SanEmail:
      return first_san(cert, GEN_EMAIL);
    case config::CertIdentity::SanDns:
      return first_san(cert, GEN_DNS);
  }
  return std::unexpected("unknown cert_identity");
}

std::expected<std::string, std::string> verified_peer_identity(const SSL* ssl,
                                                               config::CertIdentity how) {
  if (ssl == nullptr || SSL_is_init_finished(ssl) == 0) {
    return std::unexpected("the TLS handshake has not completed");
  }
  if (SSL_is_server(ssl) == 0) {
    return std::unexpected("not the server side of a TLS connection");
  }
  const X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) {
    return std::unexpected("the client did not present a certificate");
  }
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return std::unexpected("the client certificate did not verify");
  }
  return certificate_identity(peer, how);
}

}  // namespace pgwarden::tls
