#include "crypto/random.h"

#include <openssl/rand.h>

#include <algorithm>
#include <climits>

#include "crypto/secret.h"

namespace pgwarden::crypto {

bool random_bytes(std::span<std::byte> out) {
  // RAND_bytes takes an int length: feed very large requests in chunks.
  constexpr std::size_t kChunk = 1u << 20;
  for (std::size_t at = 0; at < out.size(); at += kChunk) {
    std::size_t n = std::min(kChunk, out.size() - at);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data() + at), static_cast<int>(n)) != 1) {
      wipe(out);
      return false;
    }
  }
  return true;
}

}  // namespace pgwarden::crypto
