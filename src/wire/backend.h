// Typed decoders and encoders for every message a backend (server) sends: the
// Authentication* family, session setup (BackendKeyData, ParameterStatus,
// NegotiateProtocolVersion), query results, COPY, notices and errors.
//
// The contract is the frontend codec's (see wire/frontend.h): parse_xxx(body) parses exactly
// the body of one framed message, checks every count against the bytes left before
// reserving, treats negative lengths other than the -1 NULL marker as BadLength, rejects
// out-of-domain values (format codes, ReadyForQuery status) as BadValue and leftovers as
// TrailingBytes. Decoded structs hold views into the body and live only as long as it does.
// encode(m, out) appends the whole message (type byte, length, body) and never fails.
//
// ErrorResponse and NoticeResponse keep every field in wire order, unknown codes included
// (PostgreSQL tells frontends to ignore codes they do not know, and a proxy must not drop
// them). make_error()/encode_error() build the common case used to refuse a client, e.g.
// encode_error(out, Severity::Fatal, "08P01", "invalid message length").
#pragma once

#include <array>
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

// Authentication requests ('R'), one struct per subtype.
struct AuthenticationOk {
  bool operator==(const AuthenticationOk&) const = default;
};
struct AuthenticationKerberosV5 {
  bool operator==(const AuthenticationKerberosV5&) const = default;
};
struct AuthenticationCleartextPassword {
  bool operator==(const AuthenticationCleartextPassword&) const = default;
};
struct AuthenticationMd5Password {
  std::array<std::byte, 4> salt{};
  bool operator==(const AuthenticationMd5Password&) const = default;
};
struct AuthenticationGss {
  bool operator==(const AuthenticationGss&) const = default;
};
struct AuthenticationGssContinue {
  ByteView data;
  bool operator==(const AuthenticationGssContinue&) const = default;
};
struct AuthenticationSspi {
  bool operator==(const AuthenticationSspi&) const = default;
};
struct AuthenticationSasl {
  std::vector<std::string_view> mechanisms;  // at least one, at most kMaxSaslMechanisms
  bool operator==(const AuthenticationSasl&) const = default;
};
struct AuthenticationSaslContinue {
  ByteView data;
  bool operator==(const AuthenticationSaslContinue&) const = default;
};
struct AuthenticationSaslFinal {
  ByteView data;
  bool operator==(const AuthenticationSaslFinal&) const = default;
};

struct BackendKeyData {
  std::uint32_t process_id = 0;
  ByteView secret_key;  // kMinCancelKey..kMaxCancelKey bytes (4 in protocol 3.0): a secret
  bool operator==(const BackendKeyData&) const = default;
};

struct ParameterStatus {
  std::string_view name;
  std::string_view value;
  bool operator==(const ParameterStatus&) const = default;
};

struct NegotiateProtocolVersion {
  // The newest protocol version the server supports, as PostgreSQL sends it: the whole
  // version number (3 << 16 | minor), not the bare minor its documentation describes.
  std::uint32_t newest_version = 0;
  std::uint16_t minor() const { return static_cast<std::uint16_t>(newest_version & 0xffff); }
  std::vector<std::string_view> unrecognized_options;  // "_pq_." options not recognised
  bool operator==(const NegotiateProtocolVersion&) const = default;
};

struct ParseComplete {
  bool operator==(const ParseComplete&) const = default;
};
struct BindComplete {
  bool operator==(const BindComplete&) const = default;
};
struct CloseComplete {
  bool operator==(const CloseComplete&) const = default;
};
struct NoData {
  bool operator==(const NoData&) const = default;
};
struct PortalSuspended {
  bool operator==(const PortalSuspended&) const = default;
};
struct EmptyQueryResponse {
  bool operator==(const EmptyQueryResponse&) const = default;
};

struct FieldDescription {
  std::string_view name;
  std::uint32_t table_oid = 0;     // 0 when the column is not from a table
  std::int16_t column_number = 0;  // attribute number in that table, else 0
  std::uint32_t type_oid = 0;
  std::int16_t type_size = 0;      // pg_type.typlen; negative means variable width
  std::int32_t type_modifier = 0;  // pg_attribute.atttypmod
  FormatCode format = FormatCode::Text;
  bool operator==(const FieldDescription&) const = default;
};

struct RowDescription {
  std::vector<FieldDescription> fields;  // at most kMaxFields
  bool operator==(const RowDescription&) const = default;
};

struct ParameterDescription {
  std::vector<std::uint32_t> type_oids;  // at most kMaxParams
  bool operator==(const ParameterDescription&) const = default;
};

struct DataRow {
  std::vector<std::optional<ByteView>> values;  // nullopt is SQL NULL; at most kMaxFields
  bool operator==(const DataRow&) const = default;
};

struct CommandComplete {
  std::string_view tag;  // e.g. "SELECT 3", "INSERT 0 1"
  bool operator==(const CommandComplete&) const = default;
};

// Field codes of ErrorResponse/NoticeResponse (PostgreSQL "Error and Notice Message Fields").
enum class NoticeField : char {
  Severity = 'S',     // localized
  SeverityRaw = 'V',  // never localized (9.6+)
  Code = 'C',         // SQLSTATE
  Message = 'M',
  Detail = 'D',
  Hint = 'H',
  Position = 'P',
  InternalPosition = 'p',
  InternalQuery = 'q',
  Where = 'W',
  SchemaName = 's',
  TableName = 't',
  ColumnName = 'c',
  DataTypeName = 'd',
  ConstraintName = 'n',
  File = 'F',
  Line = 'L',
  Routine = 'R',
};

struct NoticeFieldValue {
  char code = 0;  // any non-zero byte; unknown codes are kept
  std::string_view value;
  bool operator==(const NoticeFieldValue&) const = default;
};

// Body shared by ErrorResponse and NoticeResponse.
struct NoticeFields {
  std::vector<NoticeFieldValue> fields;  // wire order, at most kMaxNoticeFields
  // The first field with this code, nullopt if absent.
  std::optional<std::string_view> find(char code) const;
  std::optional<std::string_view> find(NoticeField code) const {
    return find(static_cast<char>(code));
  }
  std::string_view severity() const;  // 'V' if present, else 'S', else ""
  std::string_view sqlstate() const { return find(NoticeField::Code).value_or(""); }
  std::string_view message() const { return find(NoticeField::Message).value_or(""); }
  bool operator==(const NoticeFields&) const = default;
};

struct ErrorResponse : NoticeFields {
  bool operator==(const ErrorResponse&) const = default;
};
struct NoticeResponse : NoticeFields {
  bool operator==(const NoticeResponse&) const = default;
};

struct NotificationResponse {
  std::uint32_t process_id = 0;
  std::string_view channel;
  std::string_view payload;
  bool operator==(const NotificationResponse&) const = default;
};

enum class TransactionStatus : char { Idle = 'I', InTransaction = 'T', Failed = 'E' };

struct ReadyForQuery {
  TransactionStatus status = TransactionStatus::Idle;
  bool operator==(const ReadyForQuery&) const = default;
};

// Body shared by CopyInResponse, CopyOutResponse and CopyBothResponse.
struct CopyResponse {
  FormatCode format = FormatCode::Text;  // overall; if Text, every column must be Text
  std::vector<FormatCode> column_formats;
  bool operator==(const CopyResponse&) const = default;
};
struct CopyInResponse : CopyResponse {
  bool operator==(const CopyInResponse&) const = default;
};
struct CopyOutResponse : CopyResponse {
  bool operator==(const CopyOutResponse&) const = default;
};
struct CopyBothResponse : CopyResponse {
  bool operator==(const CopyBothResponse&) const = default;
};

struct FunctionCallResponse {
  std::optional<ByteView> result;  // nullopt is SQL NULL
  bool operator==(const FunctionCallResponse&) const = default;
};

using Authentication =
    std::variant<AuthenticationOk, AuthenticationKerberosV5, AuthenticationCleartextPassword,
                 AuthenticationMd5Password, AuthenticationGss, AuthenticationGssContinue,
                 AuthenticationSspi, AuthenticationSasl, AuthenticationSaslContinue,
                 AuthenticationSaslFinal>;

using BackendMessage =
    std::variant<AuthenticationOk, AuthenticationKerberosV5, AuthenticationCleartextPassword,
                 AuthenticationMd5Password, AuthenticationGss, AuthenticationGssContinue,
                 AuthenticationSspi, AuthenticationSasl, AuthenticationSaslContinue,
                 AuthenticationSaslFinal, BackendKeyData, ParameterStatus, NegotiateProtocolVersion,
                 ParseComplete, BindComplete, CloseComplete, NoData, PortalSuspended,
                 EmptyQueryResponse, RowDescription, ParameterDescription, DataRow, CommandComplete,
                 ErrorResponse, NoticeResponse, NotificationResponse, ReadyForQuery, CopyInResponse,
                 CopyOutResponse, CopyBothResponse, CopyData, CopyDone, FunctionCallResponse>;

// True for every type byte a backend may send.
bool is_backend_type(char type);

std::expected<BackendMessage, WireError> decode_backend(char type, Bytes body);
inline std::expected<BackendMessage, WireError> decode_backend(const Frame& frame) {
  return decode_backend(frame.type, frame.body);
}

std::expected<Authentication, WireError> parse_authentication(Bytes body);
std::expected<BackendKeyData, WireError> parse_backend_key_data(Bytes body);
std::expected<ParameterStatus, WireError> parse_parameter_status(Bytes body);
std::expected<NegotiateProtocolVersion, WireError> parse_negotiate_protocol_version(Bytes body);
std::expected<RowDescription, WireError> parse_row_description(Bytes body);
std::expected<ParameterDescription, WireError> parse_parameter_description(Bytes body);
std::expected<DataRow, WireError> parse_data_row(Bytes body);
std::expected<CommandComplete, WireError> parse_command_complete(Bytes body);
std::expected<NoticeFields, WireError> parse_notice_fields(Bytes body);
std::expected<ErrorResponse, WireError> parse_error_response(Bytes body);
std::expected<NoticeResponse, WireError> parse_notice_response(Bytes body);
std::expected<NotificationResponse, WireError> parse_notification_response(Bytes body);
std::expected<ReadyForQuery, WireError> parse_ready_for_query(Bytes body);
std::expected<CopyResponse, WireError> parse_copy_response(Bytes body);
std::expected<FunctionCallResponse, WireError> parse_function_call_response(Bytes body);

// Visits the column values of a DataRow body without allocating (for masking on the hot
// path): calls fn(index, std::optional<ByteView>) for each column in order. Same checks as
// parse_data_row.
template <typename Fn>
std::expected<void, WireError> for_each_column(Bytes body, Fn&& fn) {
  Reader r(body);
  auto n = r.i16();
  if (!n) {
    return std::unexpected(n.error());
  }
  if (*n < 0 || static_cast<std::size_t>(*n) > kMaxFields ||
      static_cast<std::size_t>(*n) > r.remaining() / 4) {
    return std::unexpected(WireError::BadCount);
  }
  for (std::size_t i = 0; i < static_cast<std::size_t>(*n); ++i) {
    auto v = read_nullable_value(r);
    if (!v) {
      return std::unexpected(v.error());
    }
    fn(i, *v);
  }
  return expect_end(r);
}

void encode(const AuthenticationOk& m, ByteVector& out);
void encode(const AuthenticationKerberosV5& m, ByteVector& out);
void encode(const AuthenticationCleartextPassword& m, ByteVector& out);
void encode(const AuthenticationMd5Password& m, ByteVector& out);
void encode(const AuthenticationGss& m, ByteVector& out);
void encode(const AuthenticationGssContinue& m, ByteVector& out);
void encode(const AuthenticationSspi& m, ByteVector& out);
void encode(const AuthenticationSasl& m, ByteVector& out);
void encode(const AuthenticationSaslContinue& m, ByteVector& out);
void encode(const AuthenticationSaslFinal& m, ByteVector& out);
void encode(const BackendKeyData& m, ByteVector& out);
void encode(const ParameterStatus& m, ByteVector& out);
void encode(const NegotiateProtocolVersion& m, ByteVector& out);
void encode(const ParseComplete& m, ByteVector& out);
void encode(const BindComplete& m, ByteVector& out);
void encode(const CloseComplete& m, ByteVector& out);
void encode(const NoData& m, ByteVector& out);
void encode(const PortalSuspended& m, ByteVector& out);
void encode(const EmptyQueryResponse& m, ByteVector& out);
void encode(const RowDescription& m, ByteVector& out);
void encode(const ParameterDescription& m, ByteVector& out);
void encode(const DataRow& m, ByteVector& out);
void encode(const CommandComplete& m, ByteVector& out);
void encode(const ErrorResponse& m, ByteVector& out);
void encode(const NoticeResponse& m, ByteVector& out);
void encode(const NotificationResponse& m, ByteVector& out);
void encode(const ReadyForQuery& m, ByteVector& out);
void encode(const CopyInResponse& m, ByteVector& out);
void encode(const CopyOutResponse& m, ByteVector& out);
void encode(const CopyBothResponse& m, ByteVector& out);
void encode(const FunctionCallResponse& m, ByteVector& out);
void encode(const Authentication& m, ByteVector& out);
void encode(const BackendMessage& m, ByteVector& out);

// Severities (the non-localized 'V' text; 'S' carries the same text from pgwarden).
enum class Severity : std::uint8_t { Error, Fatal, Panic, Warning, Notice, Debug, Info, Log };
std::string_view to_string(Severity s);

// Builds the fields of the common error/notice: S, V, C (SQLSTATE) and M, in that order.
// The result views the arguments; `severity` text is static.
NoticeFields make_notice_fields(Severity severity, std::string_view sqlstate,
                                std::string_view message);
// Appends a complete ErrorResponse / NoticeResponse with those four fields. Text is cut at
// an embedded NUL (see put_cstring). Example: FATAL 08P01 to refuse a malformed client.
void encode_error(ByteVector& out, Severity severity, std::string_view sqlstate,
                  std::string_view message);
void encode_notice(ByteVector& out, Severity severity, std::string_view sqlstate,
                   std::string_view message);

}  // namespace pgwarden::wire
