// Internal to the crypto layer: the attribute grammar of SCRAM messages (RFC 5802 section 7),
// shared by ScramServer and ScramClient. A message is a ','-separated list of attributes, each
// one ASCII letter, '=', and a value that contains no ',' (an empty value is returned as such;
// the caller decides whether it is allowed). Nothing is copied: views point into the message.
// The reader never reads past the message and reports every deviation as
// CryptoError::Malformed; check_scram_message() bounds the size and rejects NUL bytes first.
#pragma once

#include <cstddef>
#include <expected>
#include <span>
#include <string_view>

#include "crypto/error.h"
#include "crypto/scram.h"

namespace pgwarden::crypto::detail {

struct ScramAttribute {
  char name = 0;
  std::string_view value;
  std::size_t offset = 0;  // where the attribute starts in the message
};

// The size limit and no NUL anywhere (PostgreSQL handles SCRAM messages as C strings).
inline std::expected<std::string_view, CryptoError> check_scram_message(
    std::span<const std::byte> data) {
  if (data.size() > kMaxScramMessage) {
    return std::unexpected(CryptoError::MessageTooLarge);
  }
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (text.empty() || text.find('\0') != std::string_view::npos) {
    return std::unexpected(CryptoError::Malformed);
  }
  return text;
}

inline bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Attribute names that RFC 5802 defines. An extension may not reuse one of them, so a
// duplicated or misplaced standard attribute is never mistaken for an extension.
inline bool is_reserved_attribute(char c) {
  return std::string_view("acemnprsv").find(c) != std::string_view::npos;
}

// printable = %x21-2B / %x2D-7E: no control characters, no space, no ','.
inline bool is_printable_nonce(std::string_view nonce) {
  if (nonce.empty() || nonce.size() > kMaxScramNonce) {
    return false;
  }
  for (char c : nonce) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || c == ',') {
      return false;
    }
  }
  return true;
}

class AttributeReader {
 public:
  explicit AttributeReader(std::string_view text, std::size_t start = 0)
      : text_(text), pos_(start), done_(start >= text.size()) {}

  bool done() const { return done_; }

  std::expected<ScramAttribute, CryptoError> next() {
    if (done_) {
      return std::unexpected(CryptoError::Malformed);
    }
    std::size_t start = pos_;
    std::size_t comma = text_.find(',', start);
    std::string_view attr =
        text_.substr(start, comma == std::string_view::npos ? text_.npos : comma - start);
    if (comma == std::string_view::npos) {
      done_ = true;
      pos_ = text_.size();
    } else {
      pos_ = comma + 1;  // a ',' at the very end leaves an empty attribute to read: Malformed
    }
    if (attr.size() < 2 || !is_alpha(attr[0]) || attr[1] != '=') {
      return std::unexpected(CryptoError::Malformed);
    }
    return ScramAttribute{attr[0], attr.substr(2), start};
  }

  // The next attribute, which must be called `name`.
  std::expected<std::string_view, CryptoError> expect(char name) {
    auto attr = next();
    if (!attr) {
      return std::unexpected(attr.error());
    }
    if (attr->name != name) {
      return std::unexpected(CryptoError::Malformed);
    }
    return attr->value;
  }

 private:
  std::string_view text_;
  std::size_t pos_;
  bool done_;
};

}  // namespace pgwarden::crypto::detail
