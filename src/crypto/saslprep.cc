#include "crypto/saslprep.h"

#include <stringprep.h>

#include <cstdlib>
#include <cstring>

#include "crypto/secret.h"

namespace pgwarden::crypto {
namespace {

bool is_ascii(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return false;
    }
  }
  return true;
}

// Wipes and frees a buffer that libidn allocated with malloc.
void wipe_and_free(char* p) {
  if (p != nullptr) {
    OPENSSL_cleanse(p, std::strlen(p));
    std::free(p);
  }
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 == 0) {
      return false;
    }
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      len = 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      len = 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      len = 4;
    } else {
      return false;  // continuation byte in lead position, C0/C1 overlong leads, F5..FF
    }
    if (s.size() - i < len) {
      return false;
    }
    auto b1 = static_cast<unsigned char>(s[i + 1]);
    // The second byte's range depends on the lead: this excludes overlong 3- and 4-byte forms,
    // UTF-16 surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..).
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (b0 == 0xe0) {
      lo = 0xa0;
    } else if (b0 == 0xed) {
      hi = 0x9f;
    } else if (b0 == 0xf0) {
      lo = 0x90;
    } else if (b0 == 0xf4) {
      hi = 0x8f;
    }
    if (b1 < lo || b1 > hi) {
      return false;
    }
    for (std::size_t k = 2; k < len; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if (b < 0x80 || b > 0xbf) {
        return false;
      }
    }
    i += len;
  }
  return true;
}

std::string saslprep_or_raw(std::string_view password) {
  if (is_ascii(password)) {
    return std::string(password);
  }
  if (!is_valid_utf8(password)) {
    return std::string(password);
  }
  // libidn wants a NUL-terminated string; is_valid_utf8 guaranteed there is no NUL inside.
  std::string input;
  input.reserve(password.size() + 1);
  input.assign(password);
  char* prepared = nullptr;
  int rc = stringprep_profile(input.c_str(), &prepared, "SASLprep", STRINGPREP_NO_UNASSIGNED);
  wipe(input);
  if (rc != STRINGPREP_OK || prepared == nullptr) {
    wipe_and_free(prepared);
    return std::string(password);
  }
  std::string_view out(prepared);
  // PostgreSQL refuses a password that maps to nothing (e.g. only soft hyphens) and then
  // uses the raw bytes; libidn would return the empty string.
  std::string result = out.empty() ? std::string(password) : std::string(out);
  wipe_and_free(prepared);
  return result;
}

}  // namespace pgwarden::crypto
