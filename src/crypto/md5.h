// PostgreSQL's MD5 password scheme (deprecated upstream, still needed to log in to servers
// that use it):
//   stored hash      "md5" + hex(MD5(password || user))
//   auth response    "md5" + hex(MD5(hex(MD5(password || user)) || salt))
// md5_auth_response also accepts, in place of the password, an already stored hash ("md5" and
// 32 lowercase hex digits), as PgBouncer does, so a credentials file need not hold the
// cleartext. Hex is lowercase. Both return the empty string if MD5 is unavailable (an OpenSSL
// build or provider without it, e.g. FIPS mode): callers treat an empty result as a failure.
// The password is not SASLprepped: PostgreSQL's MD5 scheme hashes the raw bytes.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace pgwarden::crypto {

inline constexpr std::size_t kMd5HashLength = 35;  // "md5" + 32 hex digits

std::string md5_password_hash(std::string_view user, std::string_view password);
std::string md5_auth_response(std::string_view password_or_md5hash, std::string_view user,
                              std::span<const std::byte, 4> salt);

// True for "md5" followed by exactly 32 lowercase hex digits.
bool is_md5_hash(std::string_view s);

}  // namespace pgwarden::crypto
