#include "wire/startup.h"

#include <gtest/gtest.h>

#include <string>

#include "unit/wire/test_util.h"

namespace pgwarden::wire {
namespace {

using test::bytes_of;
using test::hex;
using test::Phase;

// Encodes `p`, pushes it through the framer in every fragmentation, decodes each frame and
// checks that the result equals `p` and re-encodes to the same bytes.
void expect_round_trip(const StartupPacket& p) {
  ByteVector wire;
  encode(p, wire);
  test::for_each_fragmentation(wire, Phase::Startup, 1, [&](const Frame& f) {
    auto d = decode_startup(f.body);
    ASSERT_TRUE(d.has_value()) << to_string(d.error());
    EXPECT_EQ(*d, p);
    ByteVector again;
    encode(*d, again);
    EXPECT_EQ(hex(again), hex(wire));
  });
}

ByteVector startup_bytes(std::uint32_t version, std::string_view pairs_with_nuls) {
  ByteVector body = bytes_of({static_cast<int>(version >> 24), static_cast<int>(version >> 16),
                              static_cast<int>(version >> 8), static_cast<int>(version)});
  auto p = as_bytes(pairs_with_nuls);
  body.insert(body.end(), p.begin(), p.end());
  return body;
}

TEST(Startup, DecodesHandWrittenStartupMessage) {
  using namespace std::string_view_literals;
  // From the "Message Formats" page: length, 196608, name/value pairs, final NUL.
  auto wire = test::concat(
      {bytes_of({0, 0, 0, 33, 0, 3, 0, 0}), test::bytes_of("user\0alice\0database\0db1\0\0"sv)});
  ASSERT_EQ(wire.size(), 33u);
  auto f = frame_startup(wire);
  ASSERT_TRUE(f && f->frame);
  auto d = decode_startup(f->frame->body);
  ASSERT_TRUE(d.has_value());
  auto& m = std::get<StartupMessage>(*d);
  EXPECT_EQ(m.major, 3);
  EXPECT_EQ(m.minor, 0);
  EXPECT_TRUE(m.is_supported_version());
  ASSERT_EQ(m.parameters.size(), 2u);
  EXPECT_EQ(m.find("user"), "alice");
  EXPECT_EQ(m.find("database"), "db1");
  EXPECT_FALSE(m.find("options"));
  EXPECT_FALSE(m.has_protocol_options());
  ByteVector again;
  encode(m, again);
  EXPECT_EQ(hex(again), hex(wire));
}

TEST(Startup, ByteExactRequests) {
  ByteVector ssl;
  encode(SslRequest{}, ssl);
  EXPECT_EQ(hex(ssl), "0000000804d2162f");
  ByteVector gss;
  encode(GssEncRequest{}, gss);
  EXPECT_EQ(hex(gss), "0000000804d21630");
  auto key = bytes_of({0xde, 0xad, 0xbe, 0xef});
  ByteVector cancel;
  encode(CancelRequest{0x01020304, ByteView{key}}, cancel);
  EXPECT_EQ(hex(cancel), "0000001004d2162e01020304deadbeef");
}

TEST(Startup, RoundTripsEveryPacket) {
  expect_round_trip(SslRequest{});
  expect_round_trip(GssEncRequest{});
  ByteVector key4 = bytes_of({1, 2, 3, 4});
  expect_round_trip(CancelRequest{42, ByteView{key4}});
  ByteVector key256(256, std::byte{0xab});
  expect_round_trip(CancelRequest{0xffffffff, ByteView{key256}});
  expect_round_trip(StartupMessage{3, 0, {{"user", "bob"}, {"database", "x"}, {"options", ""}}});
  expect_round_trip(StartupMessage{3, 2, {{"user", "bob"}, {"_pq_.compression", "on"}}});
  expect_round_trip(StartupMessage{3, 0, {}});
}

TEST(Startup, ReportsUnsupportedMinorVersions) {
  using namespace std::string_view_literals;
  auto body = startup_bytes((3u << 16) | 7u, "user\0u\0\0"sv);
  auto d = parse_startup_message(body);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->minor, 7);
  EXPECT_FALSE(d->is_supported_version());
  auto v32 = parse_startup_message(startup_bytes(kProtocol32, "\0"sv));
  ASSERT_TRUE(v32.has_value());
  EXPECT_TRUE(v32->is_supported_version());
  auto v31 = parse_startup_message(startup_bytes((3u << 16) | 1u, "\0"sv));
  ASSERT_TRUE(v31.has_value());
  EXPECT_FALSE(v31->is_supported_version());
}

TEST(Startup, FlagsProtocolOptions) {
  using namespace std::string_view_literals;
  auto body = startup_bytes(kProtocol32, "user\0u\0_pq_.foo\0bar\0\0"sv);
  auto d = parse_startup_message(body);
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ(d->parameters.size(), 2u);
  EXPECT_FALSE(d->parameters[0].is_protocol_option());
  EXPECT_TRUE(d->parameters[1].is_protocol_option());
  EXPECT_TRUE(d->has_protocol_options());
}

TEST(Startup, RejectsUnknownProtocols) {
  using namespace std::string_view_literals;
  EXPECT_EQ(decode_startup(startup_bytes(2u << 16, "\0"sv)).error(), WireError::UnknownProtocol);
  EXPECT_EQ(decode_startup(startup_bytes(4u << 16, "\0"sv)).error(), WireError::UnknownProtocol);
  EXPECT_EQ(decode_startup(bytes_of({0x04, 0xd2, 0x16, 0x31})).error(), WireError::UnknownProtocol);
  EXPECT_EQ(decode_startup(bytes_of({0x04, 0xd2, 0, 0})).error(), WireError::UnknownProtocol);
  EXPECT_EQ(decode_startup(bytes_of({0, 0})).error(), WireError::ShortMessage);
}

TEST(Startup, RejectsMalformedParameters) {
  using namespace std::string_view_literals;
  // No final terminator.
  EXPECT_EQ(parse_startup_message(startup_bytes(kProtocol30, "user\0u\0"sv)).error(),
            WireError::MissingTerminator);
  // A name without its value.
  EXPECT_EQ(parse_startup_message(startup_bytes(kProtocol30, "user\0"sv)).error(),
            WireError::MissingTerminator);
  // Nothing after the version at all.
  EXPECT_EQ(parse_startup_message(startup_bytes(kProtocol30, "")).error(),
            WireError::MissingTerminator);
  // Bytes after the terminator (an empty name is only ever the terminator).
  EXPECT_EQ(parse_startup_message(startup_bytes(kProtocol30, "user\0u\0\0x\0\0"sv)).error(),
            WireError::TrailingBytes);
  // A duplicated name is a parser-differential risk.
  EXPECT_EQ(parse_startup_message(startup_bytes(kProtocol30, "user\0a\0user\0b\0\0"sv)).error(),
            WireError::BadValue);
}

TEST(Startup, EnforcesParameterCount) {
  std::string pairs;
  for (std::size_t i = 0; i <= kMaxStartupParameters; ++i) {
    pairs += "p" + std::to_string(i);
    pairs.push_back('\0');
    pairs += "v";
    pairs.push_back('\0');
  }
  pairs.push_back('\0');
  auto body = startup_bytes(kProtocol30, pairs);
  EXPECT_EQ(parse_startup_message(body).error(), WireError::BadCount);
  auto ok = parse_startup_message(body, kMaxStartupParameters + 1);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->parameters.size(), kMaxStartupParameters + 1);
}

TEST(Startup, CancelKeyLengths) {
  auto with_key = [](std::size_t n) {
    ByteVector b = bytes_of({0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 9});
    b.resize(b.size() + n, std::byte{7});
    return b;
  };
  EXPECT_EQ(decode_startup(with_key(3)).error(), WireError::ShortMessage);
  EXPECT_EQ(decode_startup(with_key(0)).error(), WireError::ShortMessage);
  EXPECT_EQ(decode_startup(with_key(257)).error(), WireError::TooLarge);
  for (std::size_t n : {4u, 32u, 256u}) {
    auto d = decode_startup(with_key(n));
    ASSERT_TRUE(d.has_value()) << n;
    auto& c = std::get<CancelRequest>(*d);
    EXPECT_EQ(c.process_id, 9u);
    EXPECT_EQ(c.secret_key.size(), n);
  }
  EXPECT_EQ(decode_startup(bytes_of({0x04, 0xd2, 0x16, 0x2e, 0, 0})).error(),
            WireError::ShortMessage);
}

TEST(Startup, RequestsMustBeExactlyEightBytes) {
  EXPECT_EQ(decode_startup(bytes_of({0x04, 0xd2, 0x16, 0x2f, 0})).error(),
            WireError::TrailingBytes);
  EXPECT_EQ(decode_startup(bytes_of({0x04, 0xd2, 0x16, 0x30, 'N'})).error(),
            WireError::TrailingBytes);
}

TEST(Startup, OversizePacketRefusedByFramer) {
  FrameBuffer buf;
  auto header = bytes_of({0, 0, 0x30, 0});  // 12288 > kMaxStartupPacket
  buf.append(header);
  EXPECT_EQ(buf.next_startup().error(), WireError::TooLarge);
}

TEST(Startup, ClassifiesFirstBytes) {
  EXPECT_EQ(classify_first_bytes({}), FirstBytes::NeedMore);
  auto hello = bytes_of({0x16, 0x03, 0x01});
  EXPECT_EQ(classify_first_bytes(hello), FirstBytes::TlsClientHello);
  EXPECT_EQ(classify_first_bytes(Bytes(hello).first(1)), FirstBytes::TlsClientHello);
  auto pg = bytes_of({0, 0, 0, 8});
  EXPECT_EQ(classify_first_bytes(pg), FirstBytes::Postgres);
}

TEST(Startup, EncodeNeverSplitsFields) {
  // A value with an embedded NUL is cut there, so it cannot inject another parameter.
  using namespace std::string_view_literals;
  StartupMessage m{3, 0, {{"application_name", "x\0user\0postgres"sv}, {"", "ignored"}}};
  ByteVector wire;
  encode(m, wire);
  auto f = frame_startup(wire);
  ASSERT_TRUE(f && f->frame);
  auto d = parse_startup_message(f->frame->body);
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ(d->parameters.size(), 1u);
  EXPECT_EQ(d->parameters[0].value, "x");
}

}  // namespace
}  // namespace pgwarden::wire
