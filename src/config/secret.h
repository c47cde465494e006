// A configuration secret (upstream password, token signing secret, ...). The value is wiped
// with OPENSSL_cleanse when the holder is destroyed or overwritten, it is never printed by
// accident (there is no operator<< and no implicit conversion), and it is read only through
// reveal(), so every use of the plaintext is greppable. Copies are independent and each
// copy wipes its own buffer.
#pragma once

#include <string>
#include <string_view>

namespace pgwarden::config {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string value) : value_(std::move(value)) {}
  Secret(const Secret& other) : value_(other.value_) {}
  Secret(Secret&& other) noexcept : value_(std::move(other.value_)) { other.wipe(); }
  Secret& operator=(const Secret& other);
  Secret& operator=(Secret&& other) noexcept;
  ~Secret() { wipe(); }

  // The plaintext. Callers must not log it, copy it into long-lived buffers, or put it in
  // error messages.
  std::string_view reveal() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }
  std::size_t size() const noexcept { return value_.size(); }

  // Constant-time comparison (CRYPTO_memcmp over equal lengths; lengths are not secret).
  bool equals(std::string_view other) const noexcept;

 private:
  void wipe() noexcept;

  std::string value_;
};

}  // namespace pgwarden::config
