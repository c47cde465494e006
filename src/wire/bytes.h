// Bounds-checked big-endian reading and writing of protocol fields.
//
// Reader walks a span it does not own; every accessor checks the remaining length first and
// returns WireError::ShortMessage (or MissingTerminator) instead of reading past the end.
// Writer appends to a byte vector and patches message length words when a message is done.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string_view>
#include <vector>

#include "wire/error.h"

namespace pgwarden::wire {

using Bytes = std::span<const std::byte>;
using ByteVector = std::vector<std::byte>;

inline Bytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_chars(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

class Reader {
 public:
  explicit Reader(Bytes data) : data_(data) {}

  std::size_t remaining() const { return data_.size() - pos_; }
  bool empty() const { return remaining() == 0; }
  Bytes rest() const { return data_.subspan(pos_); }

  std::expected<std::uint8_t, WireError> u8() {
    if (remaining() < 1) {
      return std::unexpected(WireError::ShortMessage);
    }
    return static_cast<std::uint8_t>(data_[pos_++]);
  }
  std::expected<std::uint16_t, WireError> u16() {
    if (remaining() < 2) {
      return std::unexpected(WireError::ShortMessage);
    }
    auto v = static_cast<std::uint16_t>((std::to_integer<unsigned>(data_[pos_]) << 8) |
                                        std::to_integer<unsigned>(data_[pos_ + 1]));
    pos_ += 2;
    return v;
  }
  std::expected<std::int16_t, WireError> i16() {
    auto v = u16();
    if (!v) {
      return std::unexpected(v.error());
    }
    return static_cast<std::int16_t>(*v);
  }
  std::expected<std::uint32_t, WireError> u32() {
    if (remaining() < 4) {
      return std::unexpected(WireError::ShortMessage);
    }
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v = (v << 8) | std::to_integer<std::uint32_t>(data_[pos_ + i]);
    }
    pos_ += 4;
    return v;
  }
  std::expected<std::int32_t, WireError> i32() {
    auto v = u32();
    if (!v) {
      return std::unexpected(v.error());
    }
    return static_cast<std::int32_t>(*v);
  }
  // A NUL-terminated string; the view excludes the NUL and points into the input.
  std::expected<std::string_view, WireError> cstring() {
    auto rest_bytes = rest();
    // memchr on an empty span may receive a null pointer, which is undefined behaviour.
    if (rest_bytes.empty()) {
      return std::unexpected(WireError::MissingTerminator);
    }
    const void* nul = std::memchr(rest_bytes.data(), 0, rest_bytes.size());
    if (nul == nullptr) {
      return std::unexpected(WireError::MissingTerminator);
    }
    auto len = static_cast<std::size_t>(static_cast<const std::byte*>(nul) - rest_bytes.data());
    std::string_view s(reinterpret_cast<const char*>(rest_bytes.data()), len);
    pos_ += len + 1;
    return s;
  }
  std::expected<Bytes, WireError> bytes(std::size_t n) {
    if (remaining() < n) {
      return std::unexpected(WireError::ShortMessage);
    }
    auto b = data_.subspan(pos_, n);
    pos_ += n;
    return b;
  }

 private:
  Bytes data_;
  std::size_t pos_ = 0;
};

class Writer {
 public:
  explicit Writer(ByteVector& out) : out_(out) {}

  void u8(std::uint8_t v) { out_.push_back(std::byte{v}); }
  void u16(std::uint16_t v) {
    out_.push_back(std::byte(v >> 8));
    out_.push_back(std::byte(v & 0xff));
  }
  void i16(std::int16_t v) { u16(static_cast<std::uint16_t>(v)); }
  void u32(std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out_.push_back(std::byte((v >> shift) & 0xff));
    }
  }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void cstring(std::string_view s) {
    bytes(as_bytes(s));
    out_.push_back(std::byte{0});
  }
  void bytes(Bytes b) { out_.insert(out_.end(), b.begin(), b.end()); }

  // Starts a typed message ('Q', 'R', ...) and returns the offset of its length word.
  std::size_t begin_message(char type) {
    u8(static_cast<std::uint8_t>(type));
    return begin_untyped();
  }
  // Starts a startup-phase packet (no type byte).
  std::size_t begin_untyped() {
    std::size_t at = out_.size();
    u32(0);
    return at;
  }
  // Patches the length word at `at` to cover everything written since (length included).
  void end_message(std::size_t at) {
    auto len = static_cast<std::uint32_t>(out_.size() - at);
    for (int i = 0; i < 4; ++i) {
      out_[at + i] = std::byte((len >> (24 - 8 * i)) & 0xff);
    }
  }

 private:
  ByteVector& out_;
};

}  // namespace pgwarden::wire
