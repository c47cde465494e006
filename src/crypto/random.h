// Cryptographically secure random bytes from OpenSSL's DRBG (RAND_bytes). Every nonce, salt
// and generated key in pgwarden comes from here. A false return means the generator could not
// deliver: the caller must fail closed (refuse the connection or the operation), never fall
// back to a weaker source. On failure the output is wiped so that no partial value is used.
#pragma once

#include <cstddef>
#include <span>

namespace pgwarden::crypto {

[[nodiscard]] bool random_bytes(std::span<std::byte> out);

}  // namespace pgwarden::crypto
