#include "wire/frontend.h"

#include <gtest/gtest.h>

#include <string>

#include "unit/wire/test_util.h"

namespace pgwarden::wire {
namespace {

using namespace std::string_view_literals;
using test::bytes_of;
using test::hex;
using test::Phase;

// Encodes `m`, frames it in every fragmentation, decodes each frame with decode_frontend
// and checks equality and byte-identical re-encoding.
template <typename M>
void expect_round_trip(const M& m, AuthResponseKind auth = AuthResponseKind::None) {
  ByteVector wire;
  encode(m, wire);
  test::for_each_fragmentation(wire, Phase::Typed, 1, [&](const Frame& f) {
    auto d = decode_frontend(f, auth);
    ASSERT_TRUE(d.has_value()) << to_string(d.error());
    ASSERT_TRUE(std::holds_alternative<M>(*d));
    EXPECT_EQ(std::get<M>(*d), m);
    ByteVector again;
    encode(*d, again);
    EXPECT_EQ(hex(again), hex(wire));
  });
}

// Builds a typed message from a type byte and a raw body.
ByteVector typed(char type, Bytes body) {
  ByteVector out;
  Writer w(out);
  auto at = w.begin_message(type);
  w.bytes(body);
  w.end_message(at);
  return out;
}

WireError decode_error(char type, const ByteVector& body,
                       AuthResponseKind auth = AuthResponseKind::None) {
  auto d = decode_frontend(type, body, auth);
  EXPECT_FALSE(d.has_value());
  return d ? WireError::UnexpectedMessage : d.error();
}

TEST(Frontend, RoundTripsEveryMessage) {
  auto v1 = bytes_of({0, 1, 2, 3});
  auto v2 = bytes_of("hello");
  expect_round_trip(Query{"SELECT 1; SELECT 2"});
  expect_round_trip(Query{""});
  expect_round_trip(Parse{"s1", "SELECT $1::int, $2", {23, 0}});
  expect_round_trip(Parse{"", "SELECT 1", {}});
  expect_round_trip(Bind{"p", "s1", {}, {}, {}});
  expect_round_trip(Bind{"", "s1", {FormatCode::Binary}, {ByteView{v1}, std::nullopt}, {}});
  expect_round_trip(Bind{"p",
                         "",
                         {FormatCode::Binary, FormatCode::Text},
                         {ByteView{v1}, ByteView{v2}},
                         {FormatCode::Text, FormatCode::Binary, FormatCode::Binary}});
  expect_round_trip(Describe{TargetKind::Statement, "s1"});
  expect_round_trip(Describe{TargetKind::Portal, ""});
  expect_round_trip(Execute{"", 0});
  expect_round_trip(Execute{"p", 100});
  // PostgreSQL accepts a negative row limit as "no limit"; it must survive unchanged.
  expect_round_trip(Execute{"p", -2});
  expect_round_trip(Close{TargetKind::Portal, "p"});
  expect_round_trip(Close{TargetKind::Statement, ""});
  expect_round_trip(Sync{});
  expect_round_trip(Flush{});
  expect_round_trip(Terminate{});
  expect_round_trip(CopyData{ByteView{v2}});
  expect_round_trip(CopyData{});
  expect_round_trip(CopyDone{});
  expect_round_trip(CopyFail{"client gave up"});
  expect_round_trip(FunctionCall{1598, {}, {}, FormatCode::Text});
  expect_round_trip(
      FunctionCall{952, {FormatCode::Binary}, {ByteView{v1}, std::nullopt}, FormatCode::Binary});
  expect_round_trip(PasswordMessage{"s3cret"}, AuthResponseKind::Password);
  expect_round_trip(SaslInitialResponse{"SCRAM-SHA-256", ByteView{v2}},
                    AuthResponseKind::SaslInitial);
  expect_round_trip(SaslInitialResponse{"SCRAM-SHA-256", std::nullopt},
                    AuthResponseKind::SaslInitial);
  expect_round_trip(SaslResponse{ByteView{v2}}, AuthResponseKind::Sasl);
  expect_round_trip(GssResponse{ByteView{v1}}, AuthResponseKind::Gss);
}

TEST(Frontend, ByteExactAgainstProtocolDocs) {
  // Query: Byte1('Q'), Int32 length, String.
  ByteVector q;
  encode(Query{"SELECT 1"}, q);
  EXPECT_EQ(hex(q),
            "510000000d53454c4543542031"
            "00");
  // Sync and Terminate: Byte1 + Int32(4).
  ByteVector s;
  encode(Sync{}, s);
  encode(Terminate{}, s);
  EXPECT_EQ(hex(s),
            "530000000458"
            "00000004");
  // Execute unnamed portal, no row limit.
  ByteVector e;
  encode(Execute{"", 0}, e);
  EXPECT_EQ(hex(e), "45000000090000000000");
  // Bind, written by hand: portal "", statement "s", one format code (binary) for all,
  // two parameters (the byte "x", then NULL), no result format codes.
  auto body = test::concat({test::bytes_of("\0s\0"sv), bytes_of({0, 1, 0, 1, 0, 2}),
                            bytes_of({0, 0, 0, 1, 'x', 0xff, 0xff, 0xff, 0xff, 0, 0})});
  auto d = parse_bind(body);
  ASSERT_TRUE(d.has_value()) << to_string(d.error());
  EXPECT_EQ(d->portal, "");
  EXPECT_EQ(d->statement, "s");
  ASSERT_EQ(d->params.size(), 2u);
  EXPECT_EQ(test::hex(*d->params[0]), "78");
  EXPECT_FALSE(d->params[1].has_value());
  EXPECT_EQ(d->param_format(0), FormatCode::Binary);
  EXPECT_EQ(d->param_format(1), FormatCode::Binary);
  ByteVector again;
  encode(*d, again);
  EXPECT_EQ(hex(again), hex(typed('B', body)));
  // SASLInitialResponse with the client-first message.
  auto sasl = test::concat(
      {test::bytes_of("SCRAM-SHA-256\0"sv), bytes_of({0, 0, 0, 3}), test::bytes_of("n,,")});
  auto si = parse_sasl_initial_response(sasl);
  ASSERT_TRUE(si.has_value());
  EXPECT_EQ(si->mechanism, "SCRAM-SHA-256");
  EXPECT_EQ(as_chars(*si->data), "n,,");
}

TEST(Frontend, RejectsUnknownTypes) {
  for (char t : {'Z', 'R', 'T', 'x', '\0', '\x7f', 'A'}) {
    EXPECT_EQ(decode_error(t, {}), WireError::UnknownMessage) << t;
    EXPECT_FALSE(is_frontend_type(t));
  }
  for (char t : {'Q', 'P', 'B', 'D', 'E', 'C', 'S', 'H', 'X', 'd', 'c', 'f', 'F', 'p'}) {
    EXPECT_TRUE(is_frontend_type(t)) << t;
  }
}

TEST(Frontend, AuthResponseNeedsContext) {
  auto body = test::bytes_of("pw\0"sv);
  EXPECT_EQ(decode_error('p', body), WireError::UnexpectedMessage);
  // The same bytes decode differently per context.
  auto pw = decode_frontend('p', body, AuthResponseKind::Password);
  ASSERT_TRUE(pw.has_value());
  EXPECT_EQ(std::get<PasswordMessage>(*pw).password, "pw");
  auto gss = decode_frontend('p', body, AuthResponseKind::Gss);
  ASSERT_TRUE(gss.has_value());
  EXPECT_EQ(std::get<GssResponse>(*gss).data.size(), 3u);
}

TEST(Frontend, RejectsMissingTerminatorsAndTrailingBytes) {
  EXPECT_EQ(decode_error('Q', test::bytes_of("SELECT 1")), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('Q', test::bytes_of("SELECT 1\0x"sv)), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('Q', {}), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('S', bytes_of({0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('H', bytes_of({0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('X', bytes_of({0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('c', bytes_of({0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('f', test::bytes_of("oops")), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('p', test::bytes_of("pw"), AuthResponseKind::Password),
            WireError::MissingTerminator);
  EXPECT_EQ(decode_error('p', test::bytes_of("pw\0\0"sv), AuthResponseKind::Password),
            WireError::TrailingBytes);
  EXPECT_EQ(decode_error('P', test::bytes_of("s\0SELECT 1\0"sv)), WireError::ShortMessage);
  EXPECT_EQ(decode_error('P', test::concat({test::bytes_of("s\0q\0"sv), bytes_of({0, 0, 9})})),
            WireError::TrailingBytes);
  EXPECT_EQ(decode_error('E', test::bytes_of("\0"sv)), WireError::ShortMessage);
  EXPECT_EQ(decode_error('E', test::concat({test::bytes_of("\0"sv), bytes_of({0, 0, 0, 0, 1})})),
            WireError::TrailingBytes);
  EXPECT_EQ(decode_error('D', test::bytes_of("Sname")), WireError::MissingTerminator);
}

TEST(Frontend, RejectsBadEnumValues) {
  EXPECT_EQ(decode_error('D', test::bytes_of("Xname\0"sv)), WireError::BadValue);
  EXPECT_EQ(decode_error('C', test::bytes_of("s\0"sv)), WireError::BadValue);
  EXPECT_EQ(decode_error('D', {}), WireError::ShortMessage);
  // Bind with format code 2.
  auto bind = test::concat({test::bytes_of("\0\0"sv), bytes_of({0, 1, 0, 2, 0, 0, 0, 0})});
  EXPECT_EQ(decode_error('B', bind), WireError::BadValue);
  // Bind with result format code -1.
  auto bind2 = test::concat({test::bytes_of("\0\0"sv), bytes_of({0, 0, 0, 0, 0, 1, 0xff, 0xff})});
  EXPECT_EQ(decode_error('B', bind2), WireError::BadValue);
  // FunctionCall with result format 5.
  auto fc = bytes_of({0, 0, 0, 1, 0, 0, 0, 0, 0, 5});
  EXPECT_EQ(decode_error('F', fc), WireError::BadValue);
}

TEST(Frontend, BindFormatCountRule) {
  // Two format codes for three parameters: neither 0, 1 nor n.
  auto body = test::concat(
      {test::bytes_of("\0\0"sv), bytes_of({0, 2, 0, 0, 0, 1, 0, 3}),
       bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0})});
  EXPECT_EQ(decode_error('B', body), WireError::BadCount);
  // Three codes for three parameters is fine.
  auto ok = test::concat(
      {test::bytes_of("\0\0"sv), bytes_of({0, 3, 0, 0, 0, 1, 0, 0, 0, 3}),
       bytes_of({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0})});
  auto d = parse_bind(ok);
  ASSERT_TRUE(d.has_value()) << to_string(d.error());
  EXPECT_EQ(d->param_format(1), FormatCode::Binary);
  EXPECT_EQ(d->param_format(2), FormatCode::Text);
}

TEST(Frontend, RejectsHugeCountsBeforeAllocating) {
  // 65535 parameters announced, no bytes follow.
  auto bind = test::concat({test::bytes_of("\0\0"sv), bytes_of({0, 0, 0xff, 0xff})});
  EXPECT_EQ(decode_error('B', bind), WireError::BadCount);
  auto formats = test::concat({test::bytes_of("\0\0"sv), bytes_of({0xff, 0xff, 0, 0})});
  EXPECT_EQ(decode_error('B', formats), WireError::BadCount);
  auto parse = test::concat({test::bytes_of("\0q\0"sv), bytes_of({0xff, 0xff, 0, 0, 0, 0})});
  EXPECT_EQ(decode_error('P', parse), WireError::BadCount);
  auto results = test::concat({test::bytes_of("\0\0"sv), bytes_of({0, 0, 0, 0, 0x7f, 0xff})});
  EXPECT_EQ(decode_error('B', results), WireError::BadCount);
  // A parameter length larger than the rest of the message.
  auto long_param =
      test::concat({test::bytes_of("\0\0"sv), bytes_of({0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff})});
  EXPECT_EQ(decode_error('B', long_param), WireError::ShortMessage);
  // A negative length other than -1.
  auto neg = test::concat(
      {test::bytes_of("\0\0"sv), bytes_of({0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0})});
  EXPECT_EQ(decode_error('B', neg), WireError::BadLength);
  auto sasl_neg = test::concat({test::bytes_of("M\0"sv), bytes_of({0x80, 0, 0, 0})});
  EXPECT_EQ(decode_error('p', sasl_neg, AuthResponseKind::SaslInitial), WireError::BadLength);
  auto sasl_long = test::concat({test::bytes_of("M\0"sv), bytes_of({0, 0, 0, 9, 'a'})});
  EXPECT_EQ(decode_error('p', sasl_long, AuthResponseKind::SaslInitial), WireError::ShortMessage);
  // FunctionCall with more than kMaxFunctionArgs arguments.
  ByteVector fc = bytes_of({0, 0, 0, 1, 0, 0, 0, 101});
  fc.resize(fc.size() + 101 * 4 + 2, std::byte{0});
  EXPECT_EQ(decode_error('F', fc), WireError::BadCount);
}

TEST(Frontend, PipelineThroughFragmentedFramer) {
  // A typical extended-query pipeline arrives in one stream.
  ByteVector stream;
  encode(Parse{"", "SELECT $1", {23}}, stream);
  auto v = bytes_of("42");
  encode(Bind{"", "", {}, {ByteView{v}}, {}}, stream);
  encode(Describe{TargetKind::Portal, ""}, stream);
  encode(Execute{"", 0}, stream);
  encode(Sync{}, stream);
  std::vector<std::size_t> kinds;
  test::for_each_fragmentation(stream, Phase::Typed, 5, [&](const Frame& f) {
    auto d = decode_frontend(f.type, f.body);
    ASSERT_TRUE(d.has_value());
    kinds.push_back(d->index());
  });
  ASSERT_EQ(kinds.size(), 25u);
  EXPECT_EQ(kinds[1], 2u);  // Bind
}

TEST(Frontend, AuthMessagesObeyAuthLimit) {
  std::string big(kMaxAuthMessage, 'x');
  ByteVector wire;
  encode(PasswordMessage{big}, wire);
  EXPECT_EQ(frame_typed(wire, kMaxAuthMessage).error(), WireError::TooLarge);
}

}  // namespace
}  // namespace pgwarden::wire
