#include "crypto/base64.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace pgwarden::crypto {
namespace {

// Value of each base64 alphabet character; -1 for anything else, including '='.
constexpr std::array<std::int8_t, 256> kDecodeTable = [] {
  std::array<std::int8_t, 256> t{};
  t.fill(-1);
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::int8_t>(i);
  }
  return t;
}();

int value_of(char c) {
  return kDecodeTable[static_cast<unsigned char>(c)];
}

// EVP_EncodeBlock/EVP_DecodeBlock take int lengths: work in chunks that are whole groups.
constexpr std::size_t kEncodeChunk = 3 * (1u << 18);  // bytes in, multiple of 3
constexpr std::size_t kDecodeChunk = 4 * (1u << 18);  // characters in, multiple of 4

}  // namespace

std::string base64_encode(std::span<const std::byte> data) {
  std::string out(base64_encoded_size(data.size()), '\0');
  std::size_t written = 0;
  for (std::size_t at = 0; at < data.size(); at += kEncodeChunk) {
    std::size_t n = std::min(kEncodeChunk, data.size() - at);
    // EVP_EncodeBlock writes a NUL after the output: the final group's NUL lands on the
    // std::string's own terminator slot, which is writable.
    int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + written),
                              reinterpret_cast<const unsigned char*>(data.data() + at),
                              static_cast<int>(n));
    written += static_cast<std::size_t>(len);
  }
  out.resize(written);
  return out;
}

std::optional<std::vector<std::byte>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return std::nullopt;
  }
  if (text.empty()) {
    return std::vector<std::byte>{};
  }
  std::size_t padding = 0;
  if (text.back() == '=') {
    padding = text[text.size() - 2] == '=' ? 2 : 1;
  }
  std::size_t body = text.size() - padding;
  for (std::size_t i = 0; i < body; ++i) {
    if (value_of(text[i]) < 0) {
      return std::nullopt;  // also rejects '=' before the final group's padding
    }
  }
  // Canonical form: the bits of the last character that padding leaves unused must be zero,
  // otherwise several encodings would decode to the same bytes.
  if (padding == 1 && (value_of(text[body - 1]) & 0x03) != 0) {
    return std::nullopt;
  }
  if (padding == 2 && (value_of(text[body - 1]) & 0x0f) != 0) {
    return std::nullopt;
  }

  std::vector<std::byte> out(text.size() / 4 * 3);
  std::size_t written = 0;
  for (std::size_t at = 0; at < text.size(); at += kDecodeChunk) {
    std::size_t n = std::min(kDecodeChunk, text.size() - at);
    int len = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data() + written),
                              reinterpret_cast<const unsigned char*>(text.data() + at),
                              static_cast<int>(n));
    if (len < 0) {
      return std::nullopt;
    }
    written += static_cast<std::size_t>(len);
  }
  // EVP_DecodeBlock counts the zero bytes that padding stands for: drop them.
  if (written != out.size() || written < padding) {
    return std::nullopt;
  }
  out.resize(written - padding);
  return out;
}

}  // namespace pgwarden::crypto
