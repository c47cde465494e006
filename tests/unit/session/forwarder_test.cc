// Forwarder: the streaming scanner on the data path. Every stream is driven the way the
// server's pump drives it (append what arrived, scan the unconsumed buffer, forward the first
// `forward` bytes, keep the rest) with reads of 1, 2, 5, 100 bytes and the whole stream, and
// must come out byte for byte with the message types reported in wire order. Adversarial
// cases: every type byte outside each direction's set, lengths below 4 and above the limit,
// an over-long ReadyForQuery, and a 1 MB DataRow through a small buffer.
#include "session/forwarder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "unit/wire/test_util.h"
#include "wire/backend.h"
#include "wire/bytes.h"
#include "wire/frontend.h"
#include "wire/limits.h"

namespace pgwarden::session {
namespace {

using wire::Bytes;
using wire::ByteVector;
using wire::test::hex;
using wire::test::kFragmentSizes;

// Every type byte each direction may send once the session is established, straight from
// the protocol documentation's message list (not from the Forwarder's table).
constexpr std::string_view kClientTypes = "QPBEDCSHFdcfX";
constexpr std::string_view kServerTypes = "Z123ACDEGHINSTVWcdnst";

ByteVector header(char type, std::uint32_t length) {
  return {std::byte(type), std::byte(length >> 24), std::byte((length >> 16) & 0xff),
          std::byte((length >> 8) & 0xff), std::byte(length & 0xff)};
}

// A message with an arbitrary body (not necessarily a valid one of its type: the Forwarder
// frames, it does not decode).
ByteVector raw_message(char type, std::string_view body) {
  ByteVector out = header(type, static_cast<std::uint32_t>(body.size() + 4));
  auto b = wire::as_bytes(body);
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

void append(ByteVector& out, Bytes b) {
  out.insert(out.end(), b.begin(), b.end());
}

struct Seen {
  char type;
  std::string body_hex;
  bool operator==(const Seen&) const = default;
};

void PrintTo(const Seen& s, std::ostream* os) {
  *os << describe_type(s.type) << ":" << s.body_hex;
}

// A stream built message by message, with the observations the Forwarder must report.
struct Stream {
  Direction direction;
  ByteVector bytes;
  std::vector<Seen> expected;

  template <typename Message>
  void add(const Message& m) {
    ByteVector one;
    wire::encode(m, one);
    add_raw(one);
  }
  void add_raw(const ByteVector& one) {
    const char type = static_cast<char>(one.at(0));
    std::string body;
    if (direction == Direction::FromServer && type == 'Z') {
      body = hex(Bytes(one).subspan(5));
    }
    expected.push_back({type, body});
    append(bytes, one);
  }
};

struct DriveResult {
  ByteVector forwarded;
  std::vector<Seen> seen;
  std::optional<std::string> error;
  ByteVector rest;  // unconsumed at the end
};

// The caller contract of forwarder.h, one read of `fragment` bytes at a time.
DriveResult drive(Direction direction, Bytes stream, std::size_t fragment,
                  std::uint32_t max_message = wire::kMaxMessage) {
  Forwarder f(direction, max_message);
  DriveResult out;
  ByteVector buffer;
  std::size_t fed = 0;
  while (fed < stream.size()) {
    const std::size_t n = std::min(fragment, stream.size() - fed);
    append(buffer, stream.subspan(fed, n));
    fed += n;
    auto r = f.scan(buffer, [&](const Observed& m) {
      if (m.type == 'Z' && direction == Direction::FromServer) {
        out.seen.push_back({m.type, hex(m.body)});
      } else {
        EXPECT_TRUE(m.body.empty()) << describe_type(m.type);
        out.seen.push_back({m.type, ""});
      }
    });
    if (!r) {
      out.error = r.error().reason;
      break;
    }
    EXPECT_LE(r->forward, buffer.size());
    append(out.forwarded, Bytes(buffer).first(r->forward));
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->forward));
    // What is kept is at most one incomplete header, or one incomplete watched message, and
    // a message is never both kept and being streamed.
    if (!buffer.empty()) {
      EXPECT_FALSE(f.mid_message());
      if (buffer.size() >= 5) {
        EXPECT_EQ(direction, Direction::FromServer);
        EXPECT_EQ(static_cast<char>(buffer[0]), 'Z');
        const std::uint32_t length = (std::to_integer<std::uint32_t>(buffer[1]) << 24) |
                                     (std::to_integer<std::uint32_t>(buffer[2]) << 16) |
                                     (std::to_integer<std::uint32_t>(buffer[3]) << 8) |
                                     std::to_integer<std::uint32_t>(buffer[4]);
        EXPECT_LT(buffer.size(), std::size_t{length} + 1);
      }
    }
  }
  out.rest = std::move(buffer);
  return out;
}

void expect_passes_through(const Stream& s) {
  for (std::size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(testing::Message() << "fragment size " << fragment);
    auto r = drive(s.direction, s.bytes, fragment);
    EXPECT_FALSE(r.error) << *r.error;
    EXPECT_EQ(hex(r.forwarded), hex(s.bytes));
    EXPECT_TRUE(r.rest.empty());
    EXPECT_EQ(r.seen, s.expected);
  }
}

Stream client_stream() {
  Stream s{Direction::FromClient, {}, {}};
  s.add(wire::Query{"SELECT 1; SELECT 'x'"});
  s.add(wire::Parse{"s1", "SELECT $1::int", {23}});
  wire::Bind bind;
  bind.portal = "p1";
  bind.statement = "s1";
  const std::string param = "42";
  bind.params.push_back(wire::ByteView{wire::as_bytes(param)});
  bind.params.push_back(std::nullopt);
  s.add(bind);
  s.add(wire::Describe{wire::TargetKind::Portal, "p1"});
  s.add(wire::Execute{"p1", 0});
  s.add(wire::Flush{});
  s.add(wire::Sync{});
  s.add(wire::Close{wire::TargetKind::Statement, "s1"});
  s.add(wire::Sync{});
  wire::FunctionCall call;
  call.function_oid = 1598;
  s.add(call);
  s.add(wire::Query{"COPY t FROM STDIN"});
  const std::string row = "1\talice\n";
  s.add(wire::CopyData{wire::ByteView{wire::as_bytes(row)}});
  s.add(wire::CopyData{wire::ByteView{}});
  s.add(wire::CopyDone{});
  s.add(wire::CopyFail{"client gave up"});
  s.add(wire::Terminate{});
  return s;
}

Stream server_stream() {
  Stream s{Direction::FromServer, {}, {}};
  s.add(wire::ParseComplete{});
  s.add(wire::BindComplete{});
  wire::ParameterDescription pd;
  pd.type_oids = {23, 25};
  s.add(pd);
  wire::RowDescription rd;
  rd.fields.push_back(wire::FieldDescription{"id", 16384, 1, 23, 4, -1, wire::FormatCode::Text});
  s.add(rd);
  const std::string value = "12345";
  wire::DataRow dr;
  dr.values = {wire::ByteView{wire::as_bytes(value)}, std::nullopt};
  s.add(dr);
  s.add(wire::CommandComplete{"SELECT 1"});
  s.add(wire::ReadyForQuery{wire::TransactionStatus::Idle});
  s.add(wire::NoData{});
  s.add(wire::PortalSuspended{});
  s.add(wire::EmptyQueryResponse{});
  s.add(wire::CloseComplete{});
  s.add(wire::ParameterStatus{"TimeZone", "UTC"});
  s.add(wire::NotificationResponse{4242, "chan", "payload"});
  ByteVector notice;
  wire::encode_notice(notice, wire::Severity::Notice, "00000", "hello");
  s.add_raw(notice);
  ByteVector error;
  wire::encode_error(error, wire::Severity::Error, "42P01", "relation does not exist");
  s.add_raw(error);
  s.add(wire::ReadyForQuery{wire::TransactionStatus::Failed});
  s.add(wire::CopyInResponse{});
  s.add(wire::CopyOutResponse{});
  s.add(wire::CopyData{wire::ByteView{wire::as_bytes(value)}});
  s.add(wire::CopyDone{});
  s.add(wire::CopyBothResponse{});
  s.add(wire::FunctionCallResponse{wire::ByteView{wire::as_bytes(value)}});
  s.add(wire::ReadyForQuery{wire::TransactionStatus::InTransaction});
  s.add(wire::ReadyForQuery{wire::TransactionStatus::Idle});
  return s;
}

TEST(Forwarder, ClientStreamPassesThroughInAnyFragmentation) {
  auto s = client_stream();
  ASSERT_EQ(s.expected.size(), 16u);
  expect_passes_through(s);
}

TEST(Forwarder, ServerStreamPassesThroughInAnyFragmentation) {
  auto s = server_stream();
  ASSERT_EQ(s.expected.size(), 24u);
  expect_passes_through(s);
}

TEST(Forwarder, EveryAllowedTypePassesInItsDirection) {
  for (auto [direction, types] : {std::pair{Direction::FromClient, kClientTypes},
                                  std::pair{Direction::FromServer, kServerTypes}}) {
    Stream s{direction, {}, {}};
    for (char t : types) {
      s.add_raw(raw_message(t, t == 'Z' ? "I" : "body"));
      s.add_raw(raw_message(t, ""));
    }
    expect_passes_through(s);
  }
}

TEST(Forwarder, RejectsEveryOtherTypeByte) {
  for (auto [direction, types] : {std::pair{Direction::FromClient, kClientTypes},
                                  std::pair{Direction::FromServer, kServerTypes}}) {
    for (int b = 0; b < 256; ++b) {
      const char t = static_cast<char>(b);
      if (types.find(t) != std::string_view::npos) {
        continue;
      }
      SCOPED_TRACE(testing::Message() << "type " << describe_type(t));
      Forwarder f(direction, wire::kMaxMessage);
      auto msg = raw_message(t, "");
      int reported = 0;
      auto r = f.scan(msg, [&](const Observed&) { ++reported; });
      ASSERT_FALSE(r.has_value());
      EXPECT_NE(r.error().reason.find(describe_type(t)), std::string::npos) << r.error().reason;
      EXPECT_EQ(reported, 0);
    }
  }
}

TEST(Forwarder, TypesThatBelongToStartupOrTheOtherSideAreRefused) {
  // The client's 'p' after authentication; the server's 'R', 'K' (would leak the server's
  // cancel key) and 'v'; a second startup packet (first byte 0).
  for (char t : {'p', 'Z', 'T', '\0'}) {
    Forwarder f(Direction::FromClient, wire::kMaxMessage);
    EXPECT_FALSE(f.scan(raw_message(t, ""), [](const Observed&) {})) << describe_type(t);
  }
  for (char t : {'R', 'K', 'v', 'Q', 'P', 'X'}) {
    Forwarder f(Direction::FromServer, wire::kMaxMessage);
    EXPECT_FALSE(f.scan(raw_message(t, ""), [](const Observed&) {})) << describe_type(t);
  }
}

TEST(Forwarder, BadTypeAfterValidMessagesStopsThereInAnyFragmentation) {
  ByteVector valid;
  wire::encode(wire::Query{"SELECT 1"}, valid);
  wire::encode(wire::Sync{}, valid);
  ByteVector stream = valid;
  // A password message after login, carrying something that looks like a secret.
  append(stream, raw_message('p', "hunter2-secret"));
  append(stream, raw_message('Q', "never seen"));
  for (std::size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(testing::Message() << "fragment size " << fragment);
    auto r = drive(Direction::FromClient, stream, fragment);
    ASSERT_TRUE(r.error);
    EXPECT_EQ(r.error->find("hunter2"), std::string::npos) << *r.error;
    EXPECT_NE(r.error->find("'p'"), std::string::npos) << *r.error;
    EXPECT_EQ(r.seen, (std::vector<Seen>{{'Q', ""}, {'S', ""}}));
    // Whatever was forwarded is a prefix of the valid messages, never part of the bad one.
    ASSERT_LE(r.forwarded.size(), valid.size());
    EXPECT_EQ(hex(r.forwarded), hex(Bytes(valid).first(r.forwarded.size())));
  }
}

TEST(Forwarder, LengthBelowFourIsRefused) {
  for (auto direction : {Direction::FromClient, Direction::FromServer}) {
    for (std::uint32_t len = 0; len < 4; ++len) {
      for (char t : {'d', 'Z'}) {
        if (t == 'Z' && direction == Direction::FromClient) {
          continue;
        }
        Forwarder f(direction, wire::kMaxMessage);
        auto r = f.scan(header(t, len), [](const Observed&) { ADD_FAILURE(); });
        ASSERT_FALSE(r.has_value()) << len;
        EXPECT_NE(r.error().reason.find(std::to_string(len)), std::string::npos);
      }
    }
  }
}

TEST(Forwarder, LengthAboveTheLimitIsRefusedFromTheHeaderAlone) {
  constexpr std::uint32_t kLimit = 1000;
  for (auto direction : {Direction::FromClient, Direction::FromServer}) {
    // Exactly the limit is allowed; the header alone is enough to forward it and start
    // streaming.
    {
      Forwarder f(direction, kLimit);
      int reported = 0;
      auto r = f.scan(header('d', kLimit), [&](const Observed& m) {
        EXPECT_EQ(m.type, 'd');
        ++reported;
      });
      ASSERT_TRUE(r.has_value());
      EXPECT_EQ(r->forward, 5u);
      EXPECT_EQ(reported, 1);
      EXPECT_TRUE(f.mid_message());
    }
    for (std::uint32_t len : {kLimit + 1, 0x40000001u, 0x80000000u, 0xffffffffu}) {
      Forwarder f(direction, kLimit);
      auto r = f.scan(header('d', len), [](const Observed&) { ADD_FAILURE(); });
      ASSERT_FALSE(r.has_value()) << len;
      EXPECT_NE(r.error().reason.find(std::to_string(len)), std::string::npos);
    }
  }
  // The default limit: 1 GiB is the most any message may declare.
  Forwarder f(Direction::FromServer, wire::kMaxMessage);
  EXPECT_TRUE(f.scan(header('D', wire::kMaxMessage), [](const Observed&) {}));
  Forwarder g(Direction::FromServer, wire::kMaxMessage);
  EXPECT_FALSE(g.scan(header('D', wire::kMaxMessage + 1), [](const Observed&) {}));
}

TEST(Forwarder, SetMaxMessageAppliesToTheNextHeader) {
  Forwarder f(Direction::FromClient, 100);
  EXPECT_FALSE(f.scan(header('Q', 200), [](const Observed&) {}));
  Forwarder g(Direction::FromClient, 100);
  g.set_max_message(300);
  auto r = g.scan(header('Q', 200), [](const Observed&) {});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->forward, 5u);
}

TEST(Forwarder, ReadyForQueryIsHeldBackUntilComplete) {
  ByteVector row;
  const std::string v = "abc";
  wire::encode(wire::DataRow{{wire::ByteView{wire::as_bytes(v)}}}, row);
  ByteVector z;
  wire::encode(wire::ReadyForQuery{wire::TransactionStatus::InTransaction}, z);
  ASSERT_EQ(z.size(), 6u);
  for (std::size_t cut = 0; cut < z.size(); ++cut) {
    SCOPED_TRACE(testing::Message() << "first " << cut << " bytes of Z");
    Forwarder f(Direction::FromServer, wire::kMaxMessage);
    ByteVector buffer = row;
    append(buffer, Bytes(z).first(cut));
    std::vector<Seen> seen;
    auto on = [&](const Observed& m) { seen.push_back({m.type, hex(m.body)}); };
    auto r = f.scan(buffer, on);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->forward, row.size());  // the DataRow goes, no byte of the Z does
    EXPECT_EQ(seen, (std::vector<Seen>{{'D', ""}}));
    EXPECT_FALSE(f.mid_message());
    // The rest arrives; the Z is reported with its body and forwarded whole, once.
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->forward));
    append(buffer, Bytes(z).subspan(cut));
    r = f.scan(buffer, on);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->forward, z.size());
    EXPECT_EQ(seen, (std::vector<Seen>{{'D', ""}, {'Z', "54"}}));
  }
}

TEST(Forwarder, WatchedMessageLengthIsCapped) {
  // A ReadyForQuery is 6 bytes; a server claiming a huge one must not make us buffer it.
  std::string body(kMaxWatchedMessage - 4, 'I');
  Stream s{Direction::FromServer, {}, {}};
  s.add_raw(raw_message('Z', body));
  expect_passes_through(s);

  for (std::uint32_t len : {kMaxWatchedMessage + 1, 1u << 20}) {
    Forwarder f(Direction::FromServer, wire::kMaxMessage);
    auto r = f.scan(header('Z', len), [](const Observed&) { ADD_FAILURE(); });
    ASSERT_FALSE(r.has_value()) << len;
    EXPECT_NE(r.error().reason.find("'Z'"), std::string::npos);
  }
}

TEST(Forwarder, MegabyteDataRowStreamsThroughASmallBuffer) {
  constexpr std::size_t kBufferCapacity = 4096;
  std::string value(1 << 20, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) {
    value[i] = static_cast<char>('a' + i % 26);
  }
  ByteVector stream;
  wire::encode(wire::DataRow{{wire::ByteView{wire::as_bytes(value)}}}, stream);
  wire::encode(wire::CommandComplete{"SELECT 1"}, stream);
  wire::encode(wire::ReadyForQuery{wire::TransactionStatus::Idle}, stream);

  Forwarder f(Direction::FromServer, wire::kMaxMessage);
  ByteVector buffer;
  buffer.reserve(kBufferCapacity);
  ByteVector forwarded;
  std::vector<Seen> seen;
  std::size_t fed = 0;
  std::size_t mid_message_scans = 0;
  while (fed < stream.size()) {
    // A read fills at most the free part of the fixed buffer.
    const std::size_t n = std::min(kBufferCapacity - buffer.size(), stream.size() - fed);
    ASSERT_GT(n, 0u) << "the buffer filled up without progress";
    append(buffer, Bytes(stream).subspan(fed, n));
    fed += n;
    auto r = f.scan(buffer, [&](const Observed& m) { seen.push_back({m.type, hex(m.body)}); });
    ASSERT_TRUE(r.has_value()) << r.error().reason;
    append(forwarded, Bytes(buffer).first(r->forward));
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->forward));
    if (f.mid_message()) {
      ++mid_message_scans;
    }
    ASSERT_LE(buffer.size(), kBufferCapacity);
  }
  EXPECT_TRUE(buffer.empty());
  EXPECT_FALSE(f.mid_message());
  EXPECT_GE(mid_message_scans, (1u << 20) / kBufferCapacity - 1);
  EXPECT_EQ(forwarded.size(), stream.size());
  EXPECT_TRUE(std::equal(forwarded.begin(), forwarded.end(), stream.begin()));
  EXPECT_EQ(seen, (std::vector<Seen>{{'D', ""}, {'C', ""}, {'Z', "49"}}));
}

TEST(Forwarder, MidMessageTracksTheBodyBeingStreamed) {
  Forwarder f(Direction::FromClient, wire::kMaxMessage);
  auto msg = raw_message('d', "0123456789");
  EXPECT_FALSE(f.mid_message());
  // Header only: forwarded, body pending.
  auto r = f.scan(Bytes(msg).first(5), [](const Observed&) {});
  ASSERT_TRUE(r && r->forward == 5);
  EXPECT_TRUE(f.mid_message());
  // Part of the body.
  r = f.scan(Bytes(msg).subspan(5, 4), [](const Observed&) { ADD_FAILURE(); });
  ASSERT_TRUE(r && r->forward == 4);
  EXPECT_TRUE(f.mid_message());
  // An empty read changes nothing.
  r = f.scan(Bytes{}, [](const Observed&) { ADD_FAILURE(); });
  ASSERT_TRUE(r && r->forward == 0);
  EXPECT_TRUE(f.mid_message());
  // All but the last body byte: still inside the message.
  r = f.scan(Bytes(msg).subspan(9, 5), [](const Observed&) { ADD_FAILURE(); });
  ASSERT_TRUE(r && r->forward == 5);
  EXPECT_TRUE(f.mid_message());
  // The last body byte, then a bodiless Sync and the first 3 bytes of the next header.
  ByteVector tail(msg.begin() + 14, msg.end());
  ASSERT_EQ(tail.size(), 1u);
  wire::encode(wire::Sync{}, tail);
  append(tail, Bytes(header('Q', 100)).first(3));
  int syncs = 0;
  r = f.scan(tail, [&](const Observed& m) {
    EXPECT_EQ(m.type, 'S');
    ++syncs;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->forward, tail.size() - 3);
  EXPECT_EQ(syncs, 1);
  EXPECT_FALSE(f.mid_message());
  // A message with an empty body never leaves the scanner mid-message.
  Forwarder g(Direction::FromClient, wire::kMaxMessage);
  ASSERT_TRUE(g.scan(header('H', 4), [](const Observed&) {}));
  EXPECT_FALSE(g.mid_message());
}

TEST(Forwarder, BodyBytesThatLookLikeHeadersAreNotFramed) {
  // A CopyData whose content is itself a forbidden message: it is data, not a message.
  ByteVector inner = raw_message('K', "fake cancel key");
  Stream s{Direction::FromServer, {}, {}};
  s.add(wire::CopyData{wire::ByteView{inner}});
  s.add(wire::ReadyForQuery{wire::TransactionStatus::Idle});
  expect_passes_through(s);
}

TEST(DescribeType, PrintableOrHex) {
  EXPECT_EQ(describe_type('Q'), "'Q'");
  EXPECT_EQ(describe_type('~'), "'~'");
  EXPECT_EQ(describe_type('\0'), "0x00");
  EXPECT_EQ(describe_type(' '), "0x20");
  EXPECT_EQ(describe_type('\x1b'), "0x1b");
  EXPECT_EQ(describe_type('\x7f'), "0x7f");
  EXPECT_EQ(describe_type(static_cast<char>(0xff)), "0xff");
}

}  // namespace
}  // namespace pgwarden::session
