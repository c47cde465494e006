#include "crypto/channel_binding.h"

#include <openssl/evp.h>
#include <openssl/objects.h>

namespace pgwarden::crypto {

std::optional<std::vector<std::byte>> tls_server_end_point(const X509* cert) {
  if (cert == nullptr) {
    return std::nullopt;
  }
  int md_nid = NID_undef;
  // X509_get_signature_info resolves RSA-PSS to its hash, where X509_get_signature_nid and
  // OBJ_find_sigid_algs would not. It is declared for a non-const X509 (it may cache the
  // decoded extensions) but does not change the certificate's content.
  if (X509_get_signature_info(const_cast<X509*>(cert), &md_nid, nullptr, nullptr, nullptr) != 1) {
    return std::nullopt;
  }
  if (md_nid == NID_undef) {
    return std::nullopt;  // no hash for this signature algorithm (Ed25519, Ed448)
  }
  if (md_nid == NID_md5 || md_nid == NID_sha1) {
    md_nid = NID_sha256;
  }
  const EVP_MD* md = EVP_get_digestbynid(md_nid);
  if (md == nullptr) {
    return std::nullopt;
  }
  std::vector<std::byte> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (X509_digest(cert, md, reinterpret_cast<unsigned char*>(out.data()), &len) != 1 || len == 0) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

}  // namespace pgwarden::crypto
