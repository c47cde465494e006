#include "crypto/md5.h"

#include <openssl/evp.h>

#include <array>
#include <memory>

#include "crypto/secret.h"

namespace pgwarden::crypto {
namespace {

constexpr std::string_view kPrefix = "md5";

// "md5" + hex(MD5(a || b)), or "" when MD5 is unavailable.
std::string md5_hex(std::span<const std::byte> a, std::span<const std::byte> b) {
  std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> md(EVP_MD_fetch(nullptr, "MD5", nullptr),
                                                     &EVP_MD_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::array<unsigned char, 16> digest{};
  unsigned int len = 0;
  if (!md || !ctx || EVP_DigestInit_ex(ctx.get(), md.get(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), digest.data(), &len) != 1 || len != digest.size()) {
    return {};
  }
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  out.reserve(kMd5HashLength);
  out.append(kPrefix);
  for (unsigned char c : digest) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0x0f]);
  }
  OPENSSL_cleanse(digest.data(), digest.size());
  return out;
}

std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace

bool is_md5_hash(std::string_view s) {
  if (s.size() != kMd5HashLength || !s.starts_with(kPrefix)) {
    return false;
  }
  for (char c : s.substr(kPrefix.size())) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

std::string md5_password_hash(std::string_view user, std::string_view password) {
  return md5_hex(bytes_of(password), bytes_of(user));
}

std::string md5_auth_response(std::string_view password_or_md5hash, std::string_view user,
                              std::span<const std::byte, 4> salt) {
  std::string stored = is_md5_hash(password_or_md5hash)
                           ? std::string(password_or_md5hash)
                           : md5_password_hash(user, password_or_md5hash);
  if (stored.empty()) {
    return {};
  }
  // The stored hash is password-equivalent for MD5 authentication: wipe it.
  std::string out = md5_hex(bytes_of(std::string_view(stored).substr(kPrefix.size())), salt);
  wipe(stored);
  return out;
}

}  // namespace pgwarden::crypto
