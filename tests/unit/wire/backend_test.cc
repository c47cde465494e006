#include "wire/backend.h"

#include <gtest/gtest.h>

#include <string>

#include "unit/wire/test_util.h"

namespace pgwarden::wire {
namespace {

using namespace std::string_view_literals;
using test::bytes_of;
using test::hex;
using test::Phase;

template <typename M>
void expect_round_trip(const M& m) {
  ByteVector wire;
  encode(m, wire);
  test::for_each_fragmentation(wire, Phase::Typed, 1, [&](const Frame& f) {
    auto d = decode_backend(f);
    ASSERT_TRUE(d.has_value()) << to_string(d.error());
    ASSERT_TRUE(std::holds_alternative<M>(*d)) << "index " << d->index();
    EXPECT_EQ(std::get<M>(*d), m);
    ByteVector again;
    encode(*d, again);
    EXPECT_EQ(hex(again), hex(wire));
  });
}

WireError decode_error(char type, const ByteVector& body) {
  auto d = decode_backend(type, body);
  EXPECT_FALSE(d.has_value());
  return d ? WireError::UnexpectedMessage : d.error();
}

TEST(Backend, RoundTripsEveryMessage) {
  auto key4 = bytes_of({1, 2, 3, 4});
  ByteVector key256(256, std::byte{0x5a});
  auto blob = bytes_of("r=abc,s=c2FsdA==,i=4096");
  auto cell = bytes_of("42");
  expect_round_trip(AuthenticationOk{});
  expect_round_trip(AuthenticationKerberosV5{});
  expect_round_trip(AuthenticationCleartextPassword{});
  expect_round_trip(
      AuthenticationMd5Password{{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4}}});
  expect_round_trip(AuthenticationGss{});
  expect_round_trip(AuthenticationGssContinue{ByteView{blob}});
  expect_round_trip(AuthenticationSspi{});
  expect_round_trip(AuthenticationSasl{{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}});
  expect_round_trip(AuthenticationSaslContinue{ByteView{blob}});
  expect_round_trip(AuthenticationSaslFinal{ByteView{blob}});
  expect_round_trip(BackendKeyData{1234, ByteView{key4}});
  expect_round_trip(BackendKeyData{1234, ByteView{key256}});
  expect_round_trip(ParameterStatus{"server_version", "18.0"});
  expect_round_trip(NegotiateProtocolVersion{0x30000, {"_pq_.a", "_pq_.b"}});
  expect_round_trip(NegotiateProtocolVersion{0x30002, {}});
  expect_round_trip(ParseComplete{});
  expect_round_trip(BindComplete{});
  expect_round_trip(CloseComplete{});
  expect_round_trip(NoData{});
  expect_round_trip(PortalSuspended{});
  expect_round_trip(EmptyQueryResponse{});
  expect_round_trip(RowDescription{{{"id", 16384, 1, 23, 4, -1, FormatCode::Text},
                                    {"?column?", 0, 0, 25, -1, -1, FormatCode::Binary},
                                    {"", 0, 0, 1043, -1, 68, FormatCode::Text}}});
  expect_round_trip(RowDescription{});
  expect_round_trip(ParameterDescription{{23, 25, 0}});
  expect_round_trip(DataRow{{ByteView{cell}, std::nullopt, ByteView{}}});
  expect_round_trip(DataRow{});
  expect_round_trip(CommandComplete{"INSERT 0 1"});
  expect_round_trip(ErrorResponse{{{{'S', "ERROR"},
                                    {'V', "ERROR"},
                                    {'C', "42P01"},
                                    {'M', "relation \"t\" does not exist"},
                                    {'P', "15"},
                                    {'F', "parse_relation.c"},
                                    {'L', "1449"},
                                    {'R', "parserOpenTable"},
                                    {'Z', "unknown field kept"}}}});
  expect_round_trip(NoticeResponse{make_notice_fields(Severity::Notice, "00000", "hi")});
  expect_round_trip(NotificationResponse{77, "chan", "payload"});
  expect_round_trip(ReadyForQuery{TransactionStatus::Idle});
  expect_round_trip(ReadyForQuery{TransactionStatus::InTransaction});
  expect_round_trip(ReadyForQuery{TransactionStatus::Failed});
  expect_round_trip(CopyInResponse{{FormatCode::Text, {FormatCode::Text, FormatCode::Text}}});
  expect_round_trip(CopyOutResponse{{FormatCode::Binary, {FormatCode::Binary, FormatCode::Text}}});
  expect_round_trip(CopyBothResponse{{FormatCode::Binary, {}}});
  expect_round_trip(CopyData{ByteView{blob}});
  expect_round_trip(CopyDone{});
  expect_round_trip(FunctionCallResponse{ByteView{cell}});
  expect_round_trip(FunctionCallResponse{std::nullopt});
}

TEST(Backend, ByteExactAgainstProtocolDocs) {
  ByteVector ok;
  encode(AuthenticationOk{}, ok);
  EXPECT_EQ(hex(ok), "520000000800000000");
  ByteVector md5;
  encode(AuthenticationMd5Password{{std::byte{0xa1}, std::byte{0xb2}, std::byte{0xc3},
                                    std::byte{0xd4}}},
         md5);
  EXPECT_EQ(hex(md5), "520000000c00000005a1b2c3d4");
  ByteVector rfq;
  encode(ReadyForQuery{TransactionStatus::Idle}, rfq);
  EXPECT_EQ(hex(rfq), "5a0000000549");
  // AuthenticationSASL offering one mechanism, as PostgreSQL sends it.
  auto sasl = test::concat(
      {bytes_of({'R', 0, 0, 0, 23, 0, 0, 0, 10}), test::bytes_of("SCRAM-SHA-256\0\0"sv)});
  auto f = frame_typed(sasl, kMaxAuthMessage);
  ASSERT_TRUE(f && f->frame);
  auto d = decode_backend(f->frame->type, f->frame->body);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(std::get<AuthenticationSasl>(*d).mechanisms,
            (std::vector<std::string_view>{"SCRAM-SHA-256"}));
  // DataRow with two columns: "1" and NULL.
  auto row = bytes_of({'D', 0, 0, 0, 15, 0, 2, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xff});
  auto rf = frame_typed(row, kMaxMessage);
  ASSERT_TRUE(rf && rf->frame);
  auto dr = parse_data_row(rf->frame->body);
  ASSERT_TRUE(dr.has_value());
  ASSERT_EQ(dr->values.size(), 2u);
  EXPECT_EQ(as_chars(*dr->values[0]), "1");
  EXPECT_FALSE(dr->values[1]);
  // CommandComplete.
  ByteVector cc;
  encode(CommandComplete{"SELECT 1"}, cc);
  EXPECT_EQ(hex(cc),
            "430000000d53454c4543542031"
            "00");
}

TEST(Backend, ErrorBuilderForRefusingClients) {
  ByteVector out;
  encode_error(out, Severity::Fatal, "08P01", "invalid message length");
  auto expected =
      test::concat({bytes_of({'E', 0, 0, 0, 0}),
                    test::bytes_of("SFATAL\0VFATAL\0C08P01\0Minvalid message length\0\0"sv)});
  expected[4] = std::byte(expected.size() - 1);
  EXPECT_EQ(hex(out), hex(expected));
  auto f = frame_typed(out, kMaxMessage);
  ASSERT_TRUE(f && f->frame);
  auto e = parse_error_response(f->frame->body);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->severity(), "FATAL");
  EXPECT_EQ(e->sqlstate(), "08P01");
  EXPECT_EQ(e->message(), "invalid message length");
  EXPECT_FALSE(e->find(NoticeField::Detail));
  // Embedded NULs cannot inject fields.
  ByteVector evil;
  encode_error(evil, Severity::Error, "42501", "denied\0C00000"sv);
  auto ef = frame_typed(evil, kMaxMessage);
  ASSERT_TRUE(ef && ef->frame);
  auto ee = parse_error_response(ef->frame->body);
  ASSERT_TRUE(ee.has_value());
  EXPECT_EQ(ee->fields.size(), 4u);
  EXPECT_EQ(ee->sqlstate(), "42501");
  EXPECT_EQ(ee->message(), "denied");
  ByteVector notice;
  encode_notice(notice, Severity::Warning, "01000", "careful");
  EXPECT_EQ(static_cast<char>(notice[0]), 'N');
}

TEST(Backend, NoticeKeepsAllFieldCodes) {
  std::string body;
  for (char c : std::string_view("SVCMDHPpqWstcdnFLR")) {
    body.push_back(c);
    body += "v";
    body.push_back('\0');
  }
  body += "Xunknown";
  body.push_back('\0');
  body.push_back('\0');
  auto wire = test::bytes_of(body);  // decoded views point into it: keep it alive
  auto d = decode_backend('N', wire);
  ASSERT_TRUE(d.has_value());
  auto& n = std::get<NoticeResponse>(*d);
  ASSERT_EQ(n.fields.size(), 19u);
  EXPECT_EQ(n.find('X'), "unknown");
  EXPECT_EQ(n.find(NoticeField::Routine), "v");
}

TEST(Backend, RejectsUnknownTypesAndSubtypes) {
  for (char t : {'Q', 'P', 'B', 'X', 'p', 'F', 'f', '\0', 'z'}) {
    EXPECT_EQ(decode_error(t, {}), WireError::UnknownMessage) << t;
    EXPECT_FALSE(is_backend_type(t)) << t;
  }
  for (char t : std::string_view("RK23CdcGHWDIEVvnNAtS1sZT")) {
    EXPECT_TRUE(is_backend_type(t)) << t;
  }
  // Authentication subtypes 1, 4, 6 (removed) and 13 are not valid.
  for (int code : {1, 4, 6, 13, -1}) {
    EXPECT_EQ(decode_error('R', bytes_of({code >> 24, code >> 16, code >> 8, code})),
              WireError::BadValue)
        << code;
  }
}

TEST(Backend, RejectsMalformedAuthentication) {
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0})), WireError::ShortMessage);
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0, 0, 0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0, 5, 1, 2, 3})), WireError::ShortMessage);
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0, 5, 1, 2, 3, 4, 5})), WireError::TrailingBytes);
  // SASL list without its final terminator, empty list, trailing bytes, too many names.
  EXPECT_EQ(decode_error(
                'R', test::concat({bytes_of({0, 0, 0, 10}), test::bytes_of("SCRAM-SHA-256\0"sv)})),
            WireError::MissingTerminator);
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0, 10, 0})), WireError::BadValue);
  EXPECT_EQ(decode_error('R', bytes_of({0, 0, 0, 10, 'A', 0, 0, 'B'})), WireError::TrailingBytes);
  ByteVector many = bytes_of({0, 0, 0, 10});
  for (std::size_t i = 0; i <= kMaxSaslMechanisms; ++i) {
    many.push_back(std::byte{'m'});
    many.push_back(std::byte{0});
  }
  many.push_back(std::byte{0});
  EXPECT_EQ(decode_error('R', many), WireError::BadCount);
}

TEST(Backend, BackendKeyDataKeyLength) {
  EXPECT_EQ(decode_error('K', bytes_of({0, 0, 0, 1, 1, 2, 3})), WireError::ShortMessage);
  ByteVector big = bytes_of({0, 0, 0, 1});
  big.resize(4 + kMaxCancelKey + 1, std::byte{1});
  EXPECT_EQ(decode_error('K', big), WireError::TooLarge);
  EXPECT_EQ(decode_error('K', bytes_of({0, 0})), WireError::ShortMessage);
}

TEST(Backend, RejectsHugeCountsBeforeAllocating) {
  // RowDescription announcing 1000 fields with no bytes.
  EXPECT_EQ(decode_error('T', bytes_of({0x03, 0xe8})), WireError::BadCount);
  // Above kMaxFields even if bytes were present.
  ByteVector rd = bytes_of({0x06, 0x81});  // 1665
  rd.resize(2 + 1665 * 19, std::byte{0});
  EXPECT_EQ(decode_error('T', rd), WireError::BadCount);
  // Negative counts.
  EXPECT_EQ(decode_error('T', bytes_of({0xff, 0xff})), WireError::BadCount);
  EXPECT_EQ(decode_error('D', bytes_of({0x80, 0x00})), WireError::BadCount);
  EXPECT_EQ(decode_error('G', bytes_of({0, 0xff, 0xfe})), WireError::BadCount);
  // DataRow: 2 columns announced, 1 length word present.
  EXPECT_EQ(decode_error('D', bytes_of({0, 2, 0, 0, 0, 0})), WireError::BadCount);
  // DataRow: a value longer than what remains, and a bad negative length.
  EXPECT_EQ(decode_error('D', bytes_of({0, 1, 0x7f, 0xff, 0xff, 0xff, 'a'})),
            WireError::ShortMessage);
  EXPECT_EQ(decode_error('D', bytes_of({0, 1, 0xff, 0xff, 0xff, 0xfe})), WireError::BadLength);
  EXPECT_EQ(decode_error('V', bytes_of({0x80, 0, 0, 0})), WireError::BadLength);
  // ParameterDescription 65535 parameters, no OIDs.
  EXPECT_EQ(decode_error('t', bytes_of({0xff, 0xff})), WireError::BadCount);
  // NegotiateProtocolVersion with a negative or huge option count.
  EXPECT_EQ(decode_error('v', bytes_of({0, 3, 0, 0, 0xff, 0xff, 0xff, 0xff})), WireError::BadCount);
  EXPECT_EQ(decode_error('v', bytes_of({0, 3, 0, 0, 0, 0, 0x10, 0})), WireError::BadCount);
  // PostgreSQL 15 sends the whole version: 3.0 is 0x00030000. A bare minor (major 0) and
  // another major are refused.
  EXPECT_EQ(decode_error('v', bytes_of({0, 0, 0, 2, 0, 0, 0, 0})), WireError::BadValue);
  EXPECT_EQ(decode_error('v', bytes_of({0, 1, 0, 0, 0, 0, 0, 0})), WireError::BadValue);
  // Too many notice fields.
  ByteVector notice;
  for (std::size_t i = 0; i <= kMaxNoticeFields; ++i) {
    notice.push_back(std::byte{'M'});
    notice.push_back(std::byte{0});
  }
  notice.push_back(std::byte{0});
  EXPECT_EQ(decode_error('E', notice), WireError::BadCount);
}

TEST(Backend, RejectsBadValuesAndTrailingBytes) {
  EXPECT_EQ(decode_error('Z', bytes_of({'X'})), WireError::BadValue);
  EXPECT_EQ(decode_error('Z', bytes_of({'I', 0})), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('Z', {}), WireError::ShortMessage);
  // RowDescription with format code 2.
  auto rd = test::concat({bytes_of({0, 1}), test::bytes_of("a\0"sv),
                          bytes_of({0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0, 0, 0, 0, 0, 2})});
  EXPECT_EQ(decode_error('T', rd), WireError::BadValue);
  // CopyOutResponse: overall text with a binary column; overall format 2.
  EXPECT_EQ(decode_error('H', bytes_of({0, 0, 1, 0, 1})), WireError::BadValue);
  EXPECT_EQ(decode_error('H', bytes_of({2, 0, 0})), WireError::BadValue);
  EXPECT_EQ(decode_error('H', bytes_of({0, 0, 1, 0, 0, 9})), WireError::TrailingBytes);
  for (char t : std::string_view("123nsIc")) {
    EXPECT_EQ(decode_error(t, bytes_of({0})), WireError::TrailingBytes) << t;
  }
  EXPECT_EQ(decode_error('C', test::bytes_of("SELECT 1")), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('S', test::bytes_of("a\0b"sv)), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('S', test::bytes_of("a\0b\0c"sv)), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('A', bytes_of({0, 0, 0, 1, 'c', 0})), WireError::MissingTerminator);
  EXPECT_EQ(decode_error('E', test::bytes_of("Mmsg\0"sv)), WireError::ShortMessage);
  EXPECT_EQ(decode_error('E', test::bytes_of("Mmsg\0\0x"sv)), WireError::TrailingBytes);
  EXPECT_EQ(decode_error('E', test::bytes_of("Mmsg"sv)), WireError::MissingTerminator);
}

TEST(Backend, ForEachColumnMatchesParse) {
  auto a = bytes_of("alpha");
  ByteVector wire;
  encode(DataRow{{ByteView{a}, std::nullopt}}, wire);
  auto f = frame_typed(wire, kMaxMessage);
  ASSERT_TRUE(f && f->frame);
  std::vector<std::optional<ByteView>> seen;
  auto r = for_each_column(f->frame->body, [&](std::size_t i, std::optional<ByteView> v) {
    EXPECT_EQ(i, seen.size());
    seen.push_back(v);
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(seen, parse_data_row(f->frame->body)->values);
  EXPECT_EQ(for_each_column(bytes_of({0, 1, 0, 0}), [](auto, auto) {}).error(),
            WireError::BadCount);
}

TEST(Backend, ResultStreamThroughFragmentedFramer) {
  ByteVector stream;
  auto one = bytes_of("1");
  encode(RowDescription{{{"x", 0, 0, 23, 4, -1, FormatCode::Text}}}, stream);
  encode(DataRow{{ByteView{one}}}, stream);
  encode(DataRow{{std::nullopt}}, stream);
  encode(CommandComplete{"SELECT 2"}, stream);
  encode(ReadyForQuery{TransactionStatus::Idle}, stream);
  std::size_t rows = 0;
  test::for_each_fragmentation(stream, Phase::Typed, 5, [&](const Frame& f) {
    auto d = decode_backend(f.type, f.body);
    ASSERT_TRUE(d.has_value());
    rows += std::holds_alternative<DataRow>(*d) ? 1 : 0;
  });
  EXPECT_EQ(rows, 10u);
}

}  // namespace
}  // namespace pgwarden::wire
