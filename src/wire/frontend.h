// Typed decoders and encoders for every message a frontend (client) sends after the
// startup packet: the simple and extended query protocols, COPY, FunctionCall, Terminate,
// and the four messages that share the 'p' type byte.
//
// Each parse_xxx(body) takes the body of one framed message (Frame::body: the bytes after
// the length word) and parses exactly that: a field that does not fit is ShortMessage or
// MissingTerminator, a leftover byte is TrailingBytes, a count that cannot fit in the bytes
// left is BadCount (checked before anything is reserved), a negative length other than the
// -1 NULL marker is BadLength, and a value outside its domain (format code, Describe/Close
// kind) is BadValue. Nothing throws except std::bad_alloc.
//
// Decoded structs hold std::string_view / ByteView into the body: they are valid only as
// long as the caller's buffer is alive and unmodified. encode(m, out) appends the complete
// message (type byte, length word, body) to `out`; it never fails.
//
// The 'p' type byte carries PasswordMessage, SASLInitialResponse, SASLResponse or
// GSSResponse, and only the preceding authentication request tells which: the caller passes
// the expected AuthResponseKind to decode_frontend(); AuthResponseKind::None makes 'p'
// UnexpectedMessage. Password bodies are secrets: never log them.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "wire/bytes.h"
#include "wire/error.h"
#include "wire/framer.h"
#include "wire/message_type.h"
#include "wire/messages_common.h"

namespace pgwarden::wire {

// Describe and Close name either a prepared statement or a portal.
enum class TargetKind : char { Statement = 'S', Portal = 'P' };

struct Query {
  std::string_view sql;
  bool operator==(const Query&) const = default;
};

struct Parse {
  std::string_view statement;  // "" is the unnamed statement
  std::string_view query;
  std::vector<std::uint32_t> param_types;  // type OIDs; 0 leaves the type unspecified
  bool operator==(const Parse&) const = default;
};

struct Bind {
  std::string_view portal;
  std::string_view statement;
  // As on the wire: empty (all text), one code for all, or one per parameter.
  std::vector<FormatCode> param_formats;
  std::vector<std::optional<ByteView>> params;  // nullopt is SQL NULL
  // As on the wire: empty (all text), one code for all, or one per result column.
  std::vector<FormatCode> result_formats;
  FormatCode param_format(std::size_t i) const { return format_for(param_formats, i); }
  bool operator==(const Bind&) const = default;
};

struct Describe {
  TargetKind kind = TargetKind::Statement;
  std::string_view name;
  bool operator==(const Describe&) const = default;
};

struct Execute {
  std::string_view portal;
  std::int32_t max_rows = 0;  // <= 0 = no limit (PostgreSQL treats negatives as 0)
  bool operator==(const Execute&) const = default;
};

struct Close {
  TargetKind kind = TargetKind::Statement;
  std::string_view name;
  bool operator==(const Close&) const = default;
};

struct Sync {
  bool operator==(const Sync&) const = default;
};
struct Flush {
  bool operator==(const Flush&) const = default;
};
struct Terminate {
  bool operator==(const Terminate&) const = default;
};

struct CopyFail {
  std::string_view message;
  bool operator==(const CopyFail&) const = default;
};

struct FunctionCall {
  std::uint32_t function_oid = 0;
  std::vector<FormatCode> arg_formats;  // empty, one for all, or one per argument
  std::vector<std::optional<ByteView>> args;
  FormatCode result_format = FormatCode::Text;
  bool operator==(const FunctionCall&) const = default;
};

// 'p' messages.
struct PasswordMessage {
  std::string_view password;  // cleartext, MD5 digest, or a token: a secret
  bool operator==(const PasswordMessage&) const = default;
};
struct SaslInitialResponse {
  std::string_view mechanism;
  std::optional<ByteView> data;  // nullopt when the client sent length -1
  bool operator==(const SaslInitialResponse&) const = default;
};
struct SaslResponse {
  ByteView data;
  bool operator==(const SaslResponse&) const = default;
};
struct GssResponse {
  ByteView data;
  bool operator==(const GssResponse&) const = default;
};

// Which 'p' message the authentication exchange expects next.
enum class AuthResponseKind : std::uint8_t {
  None,         // no authentication request is outstanding: 'p' is unexpected
  Password,     // after AuthenticationCleartextPassword or AuthenticationMD5Password
  SaslInitial,  // after AuthenticationSASL
  Sasl,         // after AuthenticationSASLContinue
  Gss,          // after AuthenticationGSS/SSPI/GSSContinue
};

using FrontendMessage =
    std::variant<Query, Parse, Bind, Describe, Execute, Close, Sync, Flush, Terminate, CopyData,
                 CopyDone, CopyFail, FunctionCall, PasswordMessage, SaslInitialResponse,
                 SaslResponse, GssResponse>;

// True for every type byte a frontend may send after startup.
bool is_frontend_type(char type);

std::expected<FrontendMessage, WireError> decode_frontend(
    char type, Bytes body, AuthResponseKind auth = AuthResponseKind::None);
inline std::expected<FrontendMessage, WireError> decode_frontend(
    const Frame& frame, AuthResponseKind auth = AuthResponseKind::None) {
  return decode_frontend(frame.type, frame.body, auth);
}

std::expected<Query, WireError> parse_query(Bytes body);
std::expected<Parse, WireError> parse_parse(Bytes body);
std::expected<Bind, WireError> parse_bind(Bytes body);
std::expected<Describe, WireError> parse_describe(Bytes body);
std::expected<Execute, WireError> parse_execute(Bytes body);
std::expected<Close, WireError> parse_close(Bytes body);
std::expected<Sync, WireError> parse_sync(Bytes body);
std::expected<Flush, WireError> parse_flush(Bytes body);
std::expected<Terminate, WireError> parse_terminate(Bytes body);
std::expected<CopyFail, WireError> parse_copy_fail(Bytes body);
std::expected<FunctionCall, WireError> parse_function_call(Bytes body);
std::expected<PasswordMessage, WireError> parse_password_message(Bytes body);
std::expected<SaslInitialResponse, WireError> parse_sasl_initial_response(Bytes body);
std::expected<SaslResponse, WireError> parse_sasl_response(Bytes body);
std::expected<GssResponse, WireError> parse_gss_response(Bytes body);

void encode(const Query& m, ByteVector& out);
void encode(const Parse& m, ByteVector& out);
void encode(const Bind& m, ByteVector& out);
void encode(const Describe& m, ByteVector& out);
void encode(const Execute& m, ByteVector& out);
void encode(const Close& m, ByteVector& out);
void encode(const Sync& m, ByteVector& out);
void encode(const Flush& m, ByteVector& out);
void encode(const Terminate& m, ByteVector& out);
void encode(const CopyFail& m, ByteVector& out);
void encode(const FunctionCall& m, ByteVector& out);
void encode(const PasswordMessage& m, ByteVector& out);
void encode(const SaslInitialResponse& m, ByteVector& out);
void encode(const SaslResponse& m, ByteVector& out);
void encode(const GssResponse& m, ByteVector& out);
void encode(const FrontendMessage& m, ByteVector& out);

}  // namespace pgwarden::wire
