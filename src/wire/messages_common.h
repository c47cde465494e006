// Vocabulary shared by the startup, frontend and backend codecs.
//
// ByteView is a span over bytes the caller owns (usually the framer's buffer) that also
// compares by content, so decoded messages can be compared with `==` in tests and fuzzers.
// Nothing here owns memory: every view stays valid only while the buffer it points into is
// alive and unmodified. FormatCode and its helpers validate the 0/1 format-code domain.
// CopyData and CopyDone travel in both directions with the same layout, so both direction
// variants reuse the structs declared here. The codec-specific limits below complement
// wire/limits.h. Encoders never fail: a string written as a C string is cut at its first
// NUL (see put_cstring), so no caller-supplied text can split a field. Counts and lengths
// are written in the wire's int16/int32 fields: a hand-built message must respect
// kMaxFields/kMaxParams (every decoded message does).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "wire/bytes.h"
#include "wire/error.h"
#include "wire/limits.h"

namespace pgwarden::wire {

// An ErrorResponse/NoticeResponse carries at most this many fields (PostgreSQL sends < 20).
inline constexpr std::size_t kMaxNoticeFields = 64;
// An AuthenticationSASL message lists at most this many mechanisms.
inline constexpr std::size_t kMaxSaslMechanisms = 16;
// NegotiateProtocolVersion lists at most this many unrecognised protocol options (each one
// came from a startup packet, so the startup parameter limit bounds it).
inline constexpr std::size_t kMaxProtocolOptions = kMaxStartupParameters;
// FunctionCall takes at most this many arguments (PostgreSQL's FUNC_MAX_ARGS).
inline constexpr std::size_t kMaxFunctionArgs = 100;

// A non-owning byte span that compares by content.
struct ByteView : Bytes {
  using Bytes::Bytes;
  constexpr ByteView() = default;
  constexpr ByteView(Bytes b) : Bytes(b) {}  // NOLINT(google-explicit-constructor)
  friend bool operator==(const ByteView& a, const ByteView& b) {
    return std::ranges::equal(static_cast<const Bytes&>(a), static_cast<const Bytes&>(b));
  }
};

// Column/parameter format: PostgreSQL defines only text (0) and binary (1).
enum class FormatCode : std::int16_t { Text = 0, Binary = 1 };

inline std::expected<FormatCode, WireError> to_format_code(std::int16_t v) {
  if (v != 0 && v != 1) {
    return std::unexpected(WireError::BadValue);
  }
  return static_cast<FormatCode>(v);
}

// The effective format of item `i` under the "0, 1 or n codes" rule of Bind/FunctionCall:
// no codes means all text, one code applies to all, otherwise one code per item.
inline FormatCode format_for(std::span<const FormatCode> codes, std::size_t i) {
  if (codes.empty()) {
    return FormatCode::Text;
  }
  if (codes.size() == 1) {
    return codes[0];
  }
  return i < codes.size() ? codes[i] : FormatCode::Text;
}

// Messages without a body (Sync, Flush, Terminate, CopyDone, ParseComplete, ...): anything
// after the length word is trailing bytes.
inline std::expected<void, WireError> expect_empty(Bytes body) {
  if (!body.empty()) {
    return std::unexpected(WireError::TrailingBytes);
  }
  return {};
}
inline void write_empty(char type, ByteVector& out) {
  Writer w(out);
  w.end_message(w.begin_message(type));
}

// Writes `s` as a C string, cut at its first NUL: an embedded NUL would end the field early
// and let the rest of the text be parsed as further fields (field injection).
inline void put_cstring(Writer& w, std::string_view s) {
  if (auto nul = s.find('\0'); nul != std::string_view::npos) {
    s = s.substr(0, nul);
  }
  w.cstring(s);
}

// Reads `n` int16 format codes after checking that they fit in what is left.
inline std::expected<std::vector<FormatCode>, WireError> read_format_codes(Reader& r,
                                                                           std::size_t n) {
  if (n > r.remaining() / 2) {
    return std::unexpected(WireError::BadCount);
  }
  std::vector<FormatCode> codes;
  codes.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto raw = r.i16();
    if (!raw) {
      return std::unexpected(raw.error());
    }
    auto code = to_format_code(*raw);
    if (!code) {
      return std::unexpected(code.error());
    }
    codes.push_back(*code);
  }
  return codes;
}

inline void write_format_codes(Writer& w, std::span<const FormatCode> codes) {
  w.u16(static_cast<std::uint16_t>(codes.size()));
  for (auto c : codes) {
    w.i16(static_cast<std::int16_t>(c));
  }
}

// Reads an int32 length followed by that many bytes; -1 means NULL (nullopt). Any other
// negative length is an error, and the length is checked against what is left first.
inline std::expected<std::optional<ByteView>, WireError> read_nullable_value(Reader& r) {
  auto len = r.i32();
  if (!len) {
    return std::unexpected(len.error());
  }
  if (*len == -1) {
    return std::optional<ByteView>{};
  }
  if (*len < 0) {
    return std::unexpected(WireError::BadLength);
  }
  auto data = r.bytes(static_cast<std::size_t>(*len));
  if (!data) {
    return std::unexpected(data.error());
  }
  return std::optional<ByteView>{ByteView{*data}};
}

inline void write_nullable_value(Writer& w, const std::optional<ByteView>& v) {
  if (!v) {
    w.i32(-1);
    return;
  }
  w.i32(static_cast<std::int32_t>(v->size()));
  w.bytes(*v);
}

// CopyData ('d', both directions): a chunk of the COPY stream, any content.
struct CopyData {
  ByteView data;
  bool operator==(const CopyData&) const = default;
};
// CopyDone ('c', both directions): end of the COPY stream; empty body.
struct CopyDone {
  bool operator==(const CopyDone&) const = default;
};

std::expected<CopyData, WireError> parse_copy_data(Bytes body);
std::expected<CopyDone, WireError> parse_copy_done(Bytes body);
void encode(const CopyData& m, ByteVector& out);
void encode(const CopyDone& m, ByteVector& out);

// Internal helper for decoders: turns a trailing remainder into TrailingBytes.
inline std::expected<void, WireError> expect_end(const Reader& r) {
  if (!r.empty()) {
    return std::unexpected(WireError::TrailingBytes);
  }
  return {};
}

}  // namespace pgwarden::wire
