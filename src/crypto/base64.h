// Standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /, '=' padding) as SCRAM and
// PostgreSQL's verifiers use it.
//
// base64_encode always pads. base64_decode is strict, because its input comes from the wire or
// from a credentials file and two spellings of one value must not both be accepted: the length
// must be a multiple of 4, only alphabet characters may appear, '=' only as one or two final
// characters, the bits that padding leaves unused must be zero (canonical form), and no
// whitespace or line breaks are skipped. Any violation gives std::nullopt. The empty string
// decodes to an empty vector.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::crypto {

std::string base64_encode(std::span<const std::byte> data);
std::optional<std::vector<std::byte>> base64_decode(std::string_view text);

// Length of the padded encoding of n bytes.
constexpr std::size_t base64_encoded_size(std::size_t n) {
  return (n + 2) / 3 * 4;
}

}  // namespace pgwarden::crypto
