#include "wire/backend.h"

#include <utility>

#include "wire/try.h"

namespace pgwarden::wire {
namespace {

// Smallest RowDescription field: empty name (1) + oid (4) + attnum (2) + type (4) +
// typlen (2) + typmod (4) + format (2).
constexpr std::size_t kMinFieldDescription = 19;

// Reads a non-negative int16 count bounded by `limit` and by `min_item` bytes per item.
std::expected<std::size_t, WireError> read_count16(Reader& r, std::size_t limit,
                                                   std::size_t min_item) {
  PGW_TRY(auto n, r.i16());
  if (n < 0 || static_cast<std::size_t>(n) > limit ||
      static_cast<std::size_t>(n) > r.remaining() / min_item) {
    return std::unexpected(WireError::BadCount);
  }
  return static_cast<std::size_t>(n);
}

// A list of C strings ended by an empty one (AuthenticationSASL).
std::expected<std::vector<std::string_view>, WireError> read_string_list(Reader& r,
                                                                         std::size_t limit) {
  std::vector<std::string_view> out;
  for (;;) {
    PGW_TRY(auto s, r.cstring());
    if (s.empty()) {
      return out;
    }
    if (out.size() >= limit) {
      return std::unexpected(WireError::BadCount);
    }
    out.push_back(s);
  }
}

void write_auth(AuthType t, Bytes extra, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('R');
  w.i32(static_cast<std::int32_t>(t));
  w.bytes(extra);
  w.end_message(at);
}

void write_notice(char type, const NoticeFields& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message(type);
  for (const auto& f : m.fields) {
    if (f.code == 0) {
      continue;  // a zero code is the list terminator and cannot be a field
    }
    w.u8(static_cast<std::uint8_t>(f.code));
    put_cstring(w, f.value);
  }
  w.u8(0);
  w.end_message(at);
}

void write_copy_response(char type, const CopyResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message(type);
  w.u8(static_cast<std::uint8_t>(m.format));
  write_format_codes(w, m.column_formats);
  w.end_message(at);
}

template <typename T>
std::expected<BackendMessage, WireError> lift(std::expected<T, WireError> v) {
  if (!v) {
    return std::unexpected(v.error());
  }
  return BackendMessage{std::move(*v)};
}

template <typename T>
std::expected<T, WireError> derive(std::expected<NoticeFields, WireError> v) {
  if (!v) {
    return std::unexpected(v.error());
  }
  return T{std::move(*v)};
}

template <typename T>
std::expected<T, WireError> derive(std::expected<CopyResponse, WireError> v) {
  if (!v) {
    return std::unexpected(v.error());
  }
  return T{std::move(*v)};
}

}  // namespace

bool is_backend_type(char type) {
  switch (static_cast<BackendType>(type)) {
    case BackendType::Authentication:
    case BackendType::BackendKeyData:
    case BackendType::BindComplete:
    case BackendType::CloseComplete:
    case BackendType::CommandComplete:
    case BackendType::CopyData:
    case BackendType::CopyDone:
    case BackendType::CopyInResponse:
    case BackendType::CopyOutResponse:
    case BackendType::CopyBothResponse:
    case BackendType::DataRow:
    case BackendType::EmptyQueryResponse:
    case BackendType::ErrorResponse:
    case BackendType::FunctionCallResponse:
    case BackendType::NegotiateProtocolVersion:
    case BackendType::NoData:
    case BackendType::NoticeResponse:
    case BackendType::NotificationResponse:
    case BackendType::ParameterDescription:
    case BackendType::ParameterStatus:
    case BackendType::ParseComplete:
    case BackendType::PortalSuspended:
    case BackendType::ReadyForQuery:
    case BackendType::RowDescription:
      return true;
  }
  return false;
}

std::expected<Authentication, WireError> parse_authentication(Bytes body) {
  Reader r(body);
  PGW_TRY(auto code, r.i32());
  switch (static_cast<AuthType>(code)) {
    case AuthType::Ok:
      PGW_CHECK(expect_end(r));
      return AuthenticationOk{};
    case AuthType::KerberosV5:
      PGW_CHECK(expect_end(r));
      return AuthenticationKerberosV5{};
    case AuthType::CleartextPassword:
      PGW_CHECK(expect_end(r));
      return AuthenticationCleartextPassword{};
    case AuthType::MD5Password: {
      AuthenticationMd5Password m;
      PGW_TRY(auto salt, r.bytes(m.salt.size()));
      std::ranges::copy(salt, m.salt.begin());
      PGW_CHECK(expect_end(r));
      return m;
    }
    case AuthType::GSS:
      PGW_CHECK(expect_end(r));
      return AuthenticationGss{};
    case AuthType::GSSContinue:
      return AuthenticationGssContinue{ByteView{r.rest()}};
    case AuthType::SSPI:
      PGW_CHECK(expect_end(r));
      return AuthenticationSspi{};
    case AuthType::SASL: {
      AuthenticationSasl m;
      PGW_TRY(m.mechanisms, read_string_list(r, kMaxSaslMechanisms));
      if (m.mechanisms.empty()) {
        return std::unexpected(WireError::BadValue);  // nothing the client could pick
      }
      PGW_CHECK(expect_end(r));
      return m;
    }
    case AuthType::SASLContinue:
      return AuthenticationSaslContinue{ByteView{r.rest()}};
    case AuthType::SASLFinal:
      return AuthenticationSaslFinal{ByteView{r.rest()}};
  }
  return std::unexpected(WireError::BadValue);
}

std::expected<BackendKeyData, WireError> parse_backend_key_data(Bytes body) {
  Reader r(body);
  PGW_TRY(auto pid, r.u32());
  if (r.remaining() < kMinCancelKey) {
    return std::unexpected(WireError::ShortMessage);
  }
  if (r.remaining() > kMaxCancelKey) {
    return std::unexpected(WireError::TooLarge);
  }
  return BackendKeyData{pid, ByteView{r.rest()}};
}

std::expected<ParameterStatus, WireError> parse_parameter_status(Bytes body) {
  Reader r(body);
  ParameterStatus m;
  PGW_TRY(m.name, r.cstring());
  PGW_TRY(m.value, r.cstring());
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<NegotiateProtocolVersion, WireError> parse_negotiate_protocol_version(Bytes body) {
  Reader r(body);
  NegotiateProtocolVersion m;
  PGW_TRY(m.newest_version, r.u32());
  // PostgreSQL sends the whole version number (major << 16 | minor), as libpq reads it,
  // though the documentation calls the field a minor version. The major must be 3.
  if ((m.newest_version >> 16) != 3) {
    return std::unexpected(WireError::BadValue);
  }
  PGW_TRY(auto n, r.i32());
  // Each option name takes at least its NUL.
  if (n < 0 || static_cast<std::size_t>(n) > kMaxProtocolOptions ||
      static_cast<std::size_t>(n) > r.remaining()) {
    return std::unexpected(WireError::BadCount);
  }
  m.unrecognized_options.reserve(static_cast<std::size_t>(n));
  for (std::int32_t i = 0; i < n; ++i) {
    PGW_TRY(auto name, r.cstring());
    m.unrecognized_options.push_back(name);
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<RowDescription, WireError> parse_row_description(Bytes body) {
  Reader r(body);
  PGW_TRY(auto n, read_count16(r, kMaxFields, kMinFieldDescription));
  RowDescription m;
  m.fields.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    FieldDescription f;
    PGW_TRY(f.name, r.cstring());
    PGW_TRY(f.table_oid, r.u32());
    PGW_TRY(f.column_number, r.i16());
    PGW_TRY(f.type_oid, r.u32());
    PGW_TRY(f.type_size, r.i16());
    PGW_TRY(f.type_modifier, r.i32());
    PGW_TRY(auto format, r.i16());
    PGW_TRY(f.format, to_format_code(format));
    m.fields.push_back(f);
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<ParameterDescription, WireError> parse_parameter_description(Bytes body) {
  Reader r(body);
  // PostgreSQL writes up to 65535 parameters in this int16, so it is read unsigned.
  PGW_TRY(auto n, r.u16());
  if (n > kMaxParams || n > r.remaining() / 4) {
    return std::unexpected(WireError::BadCount);
  }
  ParameterDescription m;
  m.type_oids.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    PGW_TRY(auto oid, r.u32());
    m.type_oids.push_back(oid);
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<DataRow, WireError> parse_data_row(Bytes body) {
  Reader r(body);
  PGW_TRY(auto n, read_count16(r, kMaxFields, 4));
  DataRow m;
  m.values.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    PGW_TRY(auto v, read_nullable_value(r));
    m.values.push_back(v);
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<CommandComplete, WireError> parse_command_complete(Bytes body) {
  Reader r(body);
  PGW_TRY(auto tag, r.cstring());
  PGW_CHECK(expect_end(r));
  return CommandComplete{tag};
}

std::expected<NoticeFields, WireError> parse_notice_fields(Bytes body) {
  Reader r(body);
  NoticeFields m;
  for (;;) {
    PGW_TRY(auto code, r.u8());
    if (code == 0) {
      break;
    }
    PGW_TRY(auto value, r.cstring());
    if (m.fields.size() >= kMaxNoticeFields) {
      return std::unexpected(WireError::BadCount);
    }
    m.fields.push_back({static_cast<char>(code), value});
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<ErrorResponse, WireError> parse_error_response(Bytes body) {
  return derive<ErrorResponse>(parse_notice_fields(body));
}

std::expected<NoticeResponse, WireError> parse_notice_response(Bytes body) {
  return derive<NoticeResponse>(parse_notice_fields(body));
}

std::expected<NotificationResponse, WireError> parse_notification_response(Bytes body) {
  Reader r(body);
  NotificationResponse m;
  PGW_TRY(m.process_id, r.u32());
  PGW_TRY(m.channel, r.cstring());
  PGW_TRY(m.payload, r.cstring());
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<ReadyForQuery, WireError> parse_ready_for_query(Bytes body) {
  Reader r(body);
  PGW_TRY(auto status, r.u8());
  if (status != 'I' && status != 'T' && status != 'E') {
    return std::unexpected(WireError::BadValue);
  }
  PGW_CHECK(expect_end(r));
  return ReadyForQuery{static_cast<TransactionStatus>(status)};
}

std::expected<CopyResponse, WireError> parse_copy_response(Bytes body) {
  Reader r(body);
  CopyResponse m;
  PGW_TRY(auto overall, r.u8());
  PGW_TRY(m.format, to_format_code(overall));
  PGW_TRY(auto n, read_count16(r, kMaxFields, 2));
  PGW_TRY(m.column_formats, read_format_codes(r, n));
  // "If the overall copy format is textual, all must be zero."
  if (m.format == FormatCode::Text) {
    for (auto f : m.column_formats) {
      if (f != FormatCode::Text) {
        return std::unexpected(WireError::BadValue);
      }
    }
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<FunctionCallResponse, WireError> parse_function_call_response(Bytes body) {
  Reader r(body);
  FunctionCallResponse m;
  PGW_TRY(m.result, read_nullable_value(r));
  PGW_CHECK(expect_end(r));
  return m;
}

namespace {

template <typename T>
std::expected<T, WireError> empty_message(Bytes body) {
  PGW_CHECK(expect_empty(body));
  return T{};
}

}  // namespace

std::expected<BackendMessage, WireError> decode_backend(char type, Bytes body) {
  switch (static_cast<BackendType>(type)) {
    case BackendType::Authentication: {
      auto a = parse_authentication(body);
      if (!a) {
        return std::unexpected(a.error());
      }
      return std::visit([](auto&& v) { return BackendMessage{std::move(v)}; }, std::move(*a));
    }
    case BackendType::BackendKeyData:
      return lift(parse_backend_key_data(body));
    case BackendType::ParameterStatus:
      return lift(parse_parameter_status(body));
    case BackendType::NegotiateProtocolVersion:
      return lift(parse_negotiate_protocol_version(body));
    case BackendType::ParseComplete:
      return lift(empty_message<ParseComplete>(body));
    case BackendType::BindComplete:
      return lift(empty_message<BindComplete>(body));
    case BackendType::CloseComplete:
      return lift(empty_message<CloseComplete>(body));
    case BackendType::NoData:
      return lift(empty_message<NoData>(body));
    case BackendType::PortalSuspended:
      return lift(empty_message<PortalSuspended>(body));
    case BackendType::EmptyQueryResponse:
      return lift(empty_message<EmptyQueryResponse>(body));
    case BackendType::RowDescription:
      return lift(parse_row_description(body));
    case BackendType::ParameterDescription:
      return lift(parse_parameter_description(body));
    case BackendType::DataRow:
      return lift(parse_data_row(body));
    case BackendType::CommandComplete:
      return lift(parse_command_complete(body));
    case BackendType::ErrorResponse:
      return lift(parse_error_response(body));
    case BackendType::NoticeResponse:
      return lift(parse_notice_response(body));
    case BackendType::NotificationResponse:
      return lift(parse_notification_response(body));
    case BackendType::ReadyForQuery:
      return lift(parse_ready_for_query(body));
    case BackendType::CopyInResponse:
      return lift(derive<CopyInResponse>(parse_copy_response(body)));
    case BackendType::CopyOutResponse:
      return lift(derive<CopyOutResponse>(parse_copy_response(body)));
    case BackendType::CopyBothResponse:
      return lift(derive<CopyBothResponse>(parse_copy_response(body)));
    case BackendType::CopyData:
      return lift(parse_copy_data(body));
    case BackendType::CopyDone:
      return lift(parse_copy_done(body));
    case BackendType::FunctionCallResponse:
      return lift(parse_function_call_response(body));
  }
  return std::unexpected(WireError::UnknownMessage);
}

std::optional<std::string_view> NoticeFields::find(char code) const {
  for (const auto& f : fields) {
    if (f.code == code) {
      return f.value;
    }
  }
  return std::nullopt;
}

std::string_view NoticeFields::severity() const {
  if (auto v = find(NoticeField::SeverityRaw)) {
    return *v;
  }
  return find(NoticeField::Severity).value_or("");
}

void encode(const AuthenticationOk&, ByteVector& out) {
  write_auth(AuthType::Ok, {}, out);
}
void encode(const AuthenticationKerberosV5&, ByteVector& out) {
  write_auth(AuthType::KerberosV5, {}, out);
}
void encode(const AuthenticationCleartextPassword&, ByteVector& out) {
  write_auth(AuthType::CleartextPassword, {}, out);
}
void encode(const AuthenticationMd5Password& m, ByteVector& out) {
  write_auth(AuthType::MD5Password, m.salt, out);
}
void encode(const AuthenticationGss&, ByteVector& out) {
  write_auth(AuthType::GSS, {}, out);
}
void encode(const AuthenticationGssContinue& m, ByteVector& out) {
  write_auth(AuthType::GSSContinue, m.data, out);
}
void encode(const AuthenticationSspi&, ByteVector& out) {
  write_auth(AuthType::SSPI, {}, out);
}

void encode(const AuthenticationSasl& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('R');
  w.i32(static_cast<std::int32_t>(AuthType::SASL));
  for (auto mech : m.mechanisms) {
    if (!mech.empty()) {  // an empty name would end the list early
      put_cstring(w, mech);
    }
  }
  w.u8(0);
  w.end_message(at);
}

void encode(const AuthenticationSaslContinue& m, ByteVector& out) {
  write_auth(AuthType::SASLContinue, m.data, out);
}
void encode(const AuthenticationSaslFinal& m, ByteVector& out) {
  write_auth(AuthType::SASLFinal, m.data, out);
}

void encode(const BackendKeyData& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('K');
  w.u32(m.process_id);
  w.bytes(m.secret_key);
  w.end_message(at);
}

void encode(const ParameterStatus& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('S');
  put_cstring(w, m.name);
  put_cstring(w, m.value);
  w.end_message(at);
}

void encode(const NegotiateProtocolVersion& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('v');
  w.u32(m.newest_version);
  w.i32(static_cast<std::int32_t>(m.unrecognized_options.size()));
  for (auto name : m.unrecognized_options) {
    put_cstring(w, name);
  }
  w.end_message(at);
}

void encode(const ParseComplete&, ByteVector& out) {
  write_empty('1', out);
}
void encode(const BindComplete&, ByteVector& out) {
  write_empty('2', out);
}
void encode(const CloseComplete&, ByteVector& out) {
  write_empty('3', out);
}
void encode(const NoData&, ByteVector& out) {
  write_empty('n', out);
}
void encode(const PortalSuspended&, ByteVector& out) {
  write_empty('s', out);
}
void encode(const EmptyQueryResponse&, ByteVector& out) {
  write_empty('I', out);
}

void encode(const RowDescription& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('T');
  w.i16(static_cast<std::int16_t>(m.fields.size()));
  for (const auto& f : m.fields) {
    put_cstring(w, f.name);
    w.u32(f.table_oid);
    w.i16(f.column_number);
    w.u32(f.type_oid);
    w.i16(f.type_size);
    w.i32(f.type_modifier);
    w.i16(static_cast<std::int16_t>(f.format));
  }
  w.end_message(at);
}

void encode(const ParameterDescription& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('t');
  w.u16(static_cast<std::uint16_t>(m.type_oids.size()));
  for (auto oid : m.type_oids) {
    w.u32(oid);
  }
  w.end_message(at);
}

void encode(const DataRow& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('D');
  w.i16(static_cast<std::int16_t>(m.values.size()));
  for (const auto& v : m.values) {
    write_nullable_value(w, v);
  }
  w.end_message(at);
}

void encode(const CommandComplete& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('C');
  put_cstring(w, m.tag);
  w.end_message(at);
}

void encode(const ErrorResponse& m, ByteVector& out) {
  write_notice('E', m, out);
}
void encode(const NoticeResponse& m, ByteVector& out) {
  write_notice('N', m, out);
}

void encode(const NotificationResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('A');
  w.u32(m.process_id);
  put_cstring(w, m.channel);
  put_cstring(w, m.payload);
  w.end_message(at);
}

void encode(const ReadyForQuery& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('Z');
  w.u8(static_cast<std::uint8_t>(m.status));
  w.end_message(at);
}

void encode(const CopyInResponse& m, ByteVector& out) {
  write_copy_response('G', m, out);
}
void encode(const CopyOutResponse& m, ByteVector& out) {
  write_copy_response('H', m, out);
}
void encode(const CopyBothResponse& m, ByteVector& out) {
  write_copy_response('W', m, out);
}

void encode(const FunctionCallResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('V');
  write_nullable_value(w, m.result);
  w.end_message(at);
}

void encode(const Authentication& m, ByteVector& out) {
  std::visit([&out](const auto& v) { encode(v, out); }, m);
}

void encode(const BackendMessage& m, ByteVector& out) {
  std::visit([&out](const auto& v) { encode(v, out); }, m);
}

std::string_view to_string(Severity s) {
  switch (s) {
    case Severity::Error:
      return "ERROR";
    case Severity::Fatal:
      return "FATAL";
    case Severity::Panic:
      return "PANIC";
    case Severity::Warning:
      return "WARNING";
    case Severity::Notice:
      return "NOTICE";
    case Severity::Debug:
      return "DEBUG";
    case Severity::Info:
      return "INFO";
    case Severity::Log:
      return "LOG";
  }
  return "ERROR";
}

NoticeFields make_notice_fields(Severity severity, std::string_view sqlstate,
                                std::string_view message) {
  auto text = to_string(severity);
  return NoticeFields{{{'S', text}, {'V', text}, {'C', sqlstate}, {'M', message}}};
}

void encode_error(ByteVector& out, Severity severity, std::string_view sqlstate,
                  std::string_view message) {
  write_notice('E', make_notice_fields(severity, sqlstate, message), out);
}

void encode_notice(ByteVector& out, Severity severity, std::string_view sqlstate,
                   std::string_view message) {
  write_notice('N', make_notice_fields(severity, sqlstate, message), out);
}

}  // namespace pgwarden::wire
