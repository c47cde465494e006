#include "config/secret.h"

#include <openssl/crypto.h>

namespace pgwarden::config {

Secret& Secret::operator=(const Secret& other) {
  if (this != &other) {
    wipe();
    value_ = other.value_;
  }
  return *this;
}

Secret& Secret::operator=(Secret&& other) noexcept {
  if (this != &other) {
    wipe();
    value_ = std::move(other.value_);
    other.wipe();
  }
  return *this;
}

bool Secret::equals(std::string_view other) const noexcept {
  if (other.size() != value_.size()) {
    return false;
  }
  if (value_.empty()) {
    return true;
  }
  return CRYPTO_memcmp(value_.data(), other.data(), value_.size()) == 0;
}

void Secret::wipe() noexcept {
  // Cleanse the whole capacity: a shorter value may have overwritten a longer one.
  if (value_.capacity() > 0) {
    OPENSSL_cleanse(value_.data(), value_.capacity());
  }
  value_.clear();
}

}  // namespace pgwarden::config
