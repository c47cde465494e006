// Wiping of secrets held in ordinary containers. Each wipe() overwrites the whole allocation
// with OPENSSL_cleanse (which the compiler may not elide) and then empties the container, so a
// wiped value is empty, not merely zeroed. For strings the bytes between size() and capacity()
// are wiped too, since an earlier, longer value may have left a secret there.
//
// Wiping protects only the buffer that is wiped: code that holds secrets must avoid growing a
// container after a secret is in it (a reallocation frees the old buffer unwiped), so build
// secrets into buffers reserved up front or into fixed-size arrays.
#pragma once

#include <openssl/crypto.h>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace pgwarden::crypto {

inline void wipe(std::span<std::byte> bytes) {
  if (!bytes.empty()) {
    OPENSSL_cleanse(bytes.data(), bytes.size());
  }
}

template <std::size_t N>
void wipe(std::array<std::byte, N>& a) {
  OPENSSL_cleanse(a.data(), a.size());
}

inline void wipe(std::vector<std::byte>& v) {
  if (v.capacity() != 0) {
    v.resize(v.capacity());
    OPENSSL_cleanse(v.data(), v.size());
  }
  v.clear();
}

inline void wipe(std::string& s) {
  s.resize(s.capacity());
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace pgwarden::crypto
