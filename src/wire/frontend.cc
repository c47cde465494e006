#include "wire/frontend.h"

#include <utility>

#include "wire/try.h"

namespace pgwarden::wire {
namespace {

std::expected<TargetKind, WireError> to_target_kind(std::uint8_t v) {
  if (v != 'S' && v != 'P') {
    return std::unexpected(WireError::BadValue);
  }
  return static_cast<TargetKind>(v);
}

// Reads `n` int32-length values (NULL = -1) after checking that n length words fit.
std::expected<std::vector<std::optional<ByteView>>, WireError> read_values(Reader& r,
                                                                           std::size_t n) {
  if (n > r.remaining() / 4) {
    return std::unexpected(WireError::BadCount);
  }
  std::vector<std::optional<ByteView>> values;
  values.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    PGW_TRY(auto v, read_nullable_value(r));
    values.push_back(v);
  }
  return values;
}

// The "0, 1 or n" rule shared by Bind and FunctionCall.
bool format_count_ok(std::size_t formats, std::size_t items) {
  return formats <= 1 || formats == items;
}

}  // namespace

std::expected<CopyData, WireError> parse_copy_data(Bytes body) {
  return CopyData{ByteView{body}};
}

std::expected<CopyDone, WireError> parse_copy_done(Bytes body) {
  PGW_CHECK(expect_empty(body));
  return CopyDone{};
}

void encode(const CopyData& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('d');
  w.bytes(m.data);
  w.end_message(at);
}

void encode(const CopyDone&, ByteVector& out) {
  write_empty('c', out);
}

bool is_frontend_type(char type) {
  switch (static_cast<FrontendType>(type)) {
    case FrontendType::Bind:
    case FrontendType::Close:
    case FrontendType::CopyData:
    case FrontendType::CopyDone:
    case FrontendType::CopyFail:
    case FrontendType::Describe:
    case FrontendType::Execute:
    case FrontendType::Flush:
    case FrontendType::FunctionCall:
    case FrontendType::Parse:
    case FrontendType::AuthResponse:
    case FrontendType::Query:
    case FrontendType::Sync:
    case FrontendType::Terminate:
      return true;
  }
  return false;
}

std::expected<Query, WireError> parse_query(Bytes body) {
  Reader r(body);
  PGW_TRY(auto sql, r.cstring());
  PGW_CHECK(expect_end(r));
  return Query{sql};
}

std::expected<Parse, WireError> parse_parse(Bytes body) {
  Reader r(body);
  Parse m;
  PGW_TRY(m.statement, r.cstring());
  PGW_TRY(m.query, r.cstring());
  PGW_TRY(auto n, r.u16());
  if (n > kMaxParams || n > r.remaining() / 4) {
    return std::unexpected(WireError::BadCount);
  }
  m.param_types.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    PGW_TRY(auto oid, r.u32());
    m.param_types.push_back(oid);
  }
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<Bind, WireError> parse_bind(Bytes body) {
  Reader r(body);
  Bind m;
  PGW_TRY(m.portal, r.cstring());
  PGW_TRY(m.statement, r.cstring());
  PGW_TRY(auto nformats, r.u16());
  PGW_TRY(m.param_formats, read_format_codes(r, nformats));
  PGW_TRY(auto nparams, r.u16());
  if (nparams > kMaxParams || !format_count_ok(nformats, nparams)) {
    return std::unexpected(WireError::BadCount);
  }
  PGW_TRY(m.params, read_values(r, nparams));
  PGW_TRY(auto nresults, r.u16());
  PGW_TRY(m.result_formats, read_format_codes(r, nresults));
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<Describe, WireError> parse_describe(Bytes body) {
  Reader r(body);
  Describe m;
  PGW_TRY(auto kind, r.u8());
  PGW_TRY(m.kind, to_target_kind(kind));
  PGW_TRY(m.name, r.cstring());
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<Execute, WireError> parse_execute(Bytes body) {
  Reader r(body);
  Execute m;
  PGW_TRY(m.portal, r.cstring());
  // PostgreSQL treats any max_rows <= 0 as "no limit"; a proxy must accept what the server
  // accepts, and keeps the value as sent so the message is forwarded unchanged.
  PGW_TRY(m.max_rows, r.i32());
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<Close, WireError> parse_close(Bytes body) {
  Reader r(body);
  Close m;
  PGW_TRY(auto kind, r.u8());
  PGW_TRY(m.kind, to_target_kind(kind));
  PGW_TRY(m.name, r.cstring());
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<Sync, WireError> parse_sync(Bytes body) {
  PGW_CHECK(expect_empty(body));
  return Sync{};
}

std::expected<Flush, WireError> parse_flush(Bytes body) {
  PGW_CHECK(expect_empty(body));
  return Flush{};
}

std::expected<Terminate, WireError> parse_terminate(Bytes body) {
  PGW_CHECK(expect_empty(body));
  return Terminate{};
}

std::expected<CopyFail, WireError> parse_copy_fail(Bytes body) {
  Reader r(body);
  PGW_TRY(auto message, r.cstring());
  PGW_CHECK(expect_end(r));
  return CopyFail{message};
}

std::expected<FunctionCall, WireError> parse_function_call(Bytes body) {
  Reader r(body);
  FunctionCall m;
  PGW_TRY(m.function_oid, r.u32());
  PGW_TRY(auto nformats, r.u16());
  PGW_TRY(m.arg_formats, read_format_codes(r, nformats));
  PGW_TRY(auto nargs, r.u16());
  if (nargs > kMaxFunctionArgs || !format_count_ok(nformats, nargs)) {
    return std::unexpected(WireError::BadCount);
  }
  PGW_TRY(m.args, read_values(r, nargs));
  PGW_TRY(auto result, r.i16());
  PGW_TRY(m.result_format, to_format_code(result));
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<PasswordMessage, WireError> parse_password_message(Bytes body) {
  Reader r(body);
  PGW_TRY(auto password, r.cstring());
  PGW_CHECK(expect_end(r));
  return PasswordMessage{password};
}

std::expected<SaslInitialResponse, WireError> parse_sasl_initial_response(Bytes body) {
  Reader r(body);
  SaslInitialResponse m;
  PGW_TRY(m.mechanism, r.cstring());
  PGW_TRY(m.data, read_nullable_value(r));
  PGW_CHECK(expect_end(r));
  return m;
}

std::expected<SaslResponse, WireError> parse_sasl_response(Bytes body) {
  return SaslResponse{ByteView{body}};
}

std::expected<GssResponse, WireError> parse_gss_response(Bytes body) {
  return GssResponse{ByteView{body}};
}

namespace {

template <typename T>
std::expected<FrontendMessage, WireError> lift(std::expected<T, WireError> v) {
  if (!v) {
    return std::unexpected(v.error());
  }
  return FrontendMessage{std::move(*v)};
}

}  // namespace

std::expected<FrontendMessage, WireError> decode_frontend(char type, Bytes body,
                                                          AuthResponseKind auth) {
  switch (static_cast<FrontendType>(type)) {
    case FrontendType::Query:
      return lift(parse_query(body));
    case FrontendType::Parse:
      return lift(parse_parse(body));
    case FrontendType::Bind:
      return lift(parse_bind(body));
    case FrontendType::Describe:
      return lift(parse_describe(body));
    case FrontendType::Execute:
      return lift(parse_execute(body));
    case FrontendType::Close:
      return lift(parse_close(body));
    case FrontendType::Sync:
      return lift(parse_sync(body));
    case FrontendType::Flush:
      return lift(parse_flush(body));
    case FrontendType::Terminate:
      return lift(parse_terminate(body));
    case FrontendType::CopyData:
      return lift(parse_copy_data(body));
    case FrontendType::CopyDone:
      return lift(parse_copy_done(body));
    case FrontendType::CopyFail:
      return lift(parse_copy_fail(body));
    case FrontendType::FunctionCall:
      return lift(parse_function_call(body));
    case FrontendType::AuthResponse:
      switch (auth) {
        case AuthResponseKind::Password:
          return lift(parse_password_message(body));
        case AuthResponseKind::SaslInitial:
          return lift(parse_sasl_initial_response(body));
        case AuthResponseKind::Sasl:
          return lift(parse_sasl_response(body));
        case AuthResponseKind::Gss:
          return lift(parse_gss_response(body));
        case AuthResponseKind::None:
          break;
      }
      return std::unexpected(WireError::UnexpectedMessage);
  }
  return std::unexpected(WireError::UnknownMessage);
}

void encode(const Query& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('Q');
  put_cstring(w, m.sql);
  w.end_message(at);
}

void encode(const Parse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('P');
  put_cstring(w, m.statement);
  put_cstring(w, m.query);
  w.u16(static_cast<std::uint16_t>(m.param_types.size()));
  for (auto oid : m.param_types) {
    w.u32(oid);
  }
  w.end_message(at);
}

void encode(const Bind& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('B');
  put_cstring(w, m.portal);
  put_cstring(w, m.statement);
  write_format_codes(w, m.param_formats);
  w.u16(static_cast<std::uint16_t>(m.params.size()));
  for (const auto& p : m.params) {
    write_nullable_value(w, p);
  }
  write_format_codes(w, m.result_formats);
  w.end_message(at);
}

void encode(const Describe& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('D');
  w.u8(static_cast<std::uint8_t>(m.kind));
  put_cstring(w, m.name);
  w.end_message(at);
}

void encode(const Execute& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('E');
  put_cstring(w, m.portal);
  w.i32(m.max_rows);
  w.end_message(at);
}

void encode(const Close& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('C');
  w.u8(static_cast<std::uint8_t>(m.kind));
  put_cstring(w, m.name);
  w.end_message(at);
}

void encode(const Sync&, ByteVector& out) {
  write_empty('S', out);
}
void encode(const Flush&, ByteVector& out) {
  write_empty('H', out);
}
void encode(const Terminate&, ByteVector& out) {
  write_empty('X', out);
}

void encode(const CopyFail& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('f');
  put_cstring(w, m.message);
  w.end_message(at);
}

void encode(const FunctionCall& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('F');
  w.u32(m.function_oid);
  write_format_codes(w, m.arg_formats);
  w.u16(static_cast<std::uint16_t>(m.args.size()));
  for (const auto& a : m.args) {
    write_nullable_value(w, a);
  }
  w.i16(static_cast<std::int16_t>(m.result_format));
  w.end_message(at);
}

void encode(const PasswordMessage& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('p');
  put_cstring(w, m.password);
  w.end_message(at);
}

void encode(const SaslInitialResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('p');
  put_cstring(w, m.mechanism);
  write_nullable_value(w, m.data);
  w.end_message(at);
}

void encode(const SaslResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('p');
  w.bytes(m.data);
  w.end_message(at);
}

void encode(const GssResponse& m, ByteVector& out) {
  Writer w(out);
  auto at = w.begin_message('p');
  w.bytes(m.data);
  w.end_message(at);
}

void encode(const FrontendMessage& m, ByteVector& out) {
  std::visit([&out](const auto& v) { encode(v, out); }, m);
}

}  // namespace pgwarden::wire
