#include "wire/framer.h"

#include <gtest/gtest.h>

#include "unit/wire/test_util.h"

namespace pgwarden::wire {
namespace {

using test::bytes_of;
using test::hex;

TEST(FrameTyped, ReportsBytesNeededForHeaderAndBody) {
  auto msg = bytes_of({'Q', 0, 0, 0, 6, 'x', 0});
  for (std::size_t n = 0; n < msg.size(); ++n) {
    auto r = frame_typed(Bytes(msg).first(n), kMaxMessage);
    ASSERT_TRUE(r.has_value()) << n;
    EXPECT_FALSE(r->frame.has_value());
    EXPECT_EQ(r->need, n < 5 ? 5 - n : msg.size() - n) << n;
  }
  auto r = frame_typed(msg, kMaxMessage);
  ASSERT_TRUE(r && r->frame);
  EXPECT_EQ(r->frame->type, 'Q');
  EXPECT_EQ(hex(r->frame->body), "7800");
  EXPECT_EQ(r->frame->whole.data(), msg.data());  // zero copy: a view into the input
  EXPECT_EQ(r->frame->whole.size(), msg.size());
}

TEST(FrameTyped, OnlyFramesTheFirstMessage) {
  auto two = bytes_of({'S', 0, 0, 0, 4, 'H', 0, 0, 0, 4});
  auto r = frame_typed(two, kMaxMessage);
  ASSERT_TRUE(r && r->frame);
  EXPECT_EQ(r->frame->type, 'S');
  EXPECT_EQ(r->frame->whole.size(), 5u);
  EXPECT_TRUE(r->frame->body.empty());
}

TEST(FrameTyped, RejectsLengthBelowFour) {
  for (int len = 0; len < 4; ++len) {
    auto msg = bytes_of({'Q', 0, 0, 0, len});
    auto r = frame_typed(msg, kMaxMessage);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error(), WireError::BadLength);
  }
  // A length word with the high bit set is a huge unsigned length, not a negative one.
  auto neg = bytes_of({'Q', 0xff, 0xff, 0xff, 0xff});
  EXPECT_EQ(frame_typed(neg, kMaxMessage).error(), WireError::TooLarge);
}

TEST(FrameTyped, RejectsOversizeAsSoonAsTheLengthIsSeen) {
  // Only the 5 header bytes are present: the verdict must not wait for the body.
  auto msg = bytes_of({'p', 0, 0, 0x20, 0x01});  // 8193 > kMaxAuthMessage
  auto r = frame_typed(msg, kMaxAuthMessage);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), WireError::TooLarge);
  auto at_limit = bytes_of({'p', 0, 0, 0x20, 0x00});  // exactly 8192 is allowed
  auto ok = frame_typed(at_limit, kMaxAuthMessage);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->need, 8192u - 4u);
  auto big = bytes_of({'d', 0x40, 0, 0, 1});  // 1 GiB + 1
  EXPECT_EQ(frame_typed(big, kMaxMessage).error(), WireError::TooLarge);
}

TEST(PeekTypedHeader, ValidatesWithoutBody) {
  auto msg = bytes_of({'D', 0, 0, 0x10, 0});
  auto h = peek_typed_header(msg, kMaxMessage);
  ASSERT_TRUE(h && *h);
  EXPECT_EQ((*h)->type, 'D');
  EXPECT_EQ((*h)->length, 4096u);
  EXPECT_EQ((*h)->total(), 4097u);
  EXPECT_FALSE(*peek_typed_header(Bytes(msg).first(4), kMaxMessage));
  EXPECT_EQ(peek_typed_header(msg, 100).error(), WireError::TooLarge);
}

TEST(FrameStartup, NeedsLengthThenBody) {
  auto ssl = bytes_of({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f});
  for (std::size_t n = 0; n < ssl.size(); ++n) {
    auto r = frame_startup(Bytes(ssl).first(n));
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->frame);
    EXPECT_EQ(r->need, n < 4 ? 4 - n : 8 - n);
  }
  auto r = frame_startup(ssl);
  ASSERT_TRUE(r && r->frame);
  EXPECT_EQ(r->frame->type, kUntyped);
  EXPECT_EQ(hex(r->frame->body), "04d2162f");
}

TEST(FrameStartup, RejectsBadLengths) {
  for (int len = 0; len < 8; ++len) {
    auto msg = bytes_of({0, 0, 0, len});
    EXPECT_EQ(frame_startup(msg).error(), WireError::BadLength) << len;
  }
  auto big = bytes_of({0, 0, 0x27, 0x11});  // 10001: rejected with only 4 bytes buffered
  EXPECT_EQ(frame_startup(big).error(), WireError::TooLarge);
  auto max = bytes_of({0, 0, 0x27, 0x10});  // 10000 is allowed
  ASSERT_TRUE(frame_startup(max).has_value());
  EXPECT_EQ(frame_startup(max)->need, 10000u - 4u);
  // A TLS ClientHello parsed as a length is far too large, never a silent wait.
  auto tls = bytes_of({0x16, 0x03, 0x01, 0x02});
  EXPECT_EQ(frame_startup(tls).error(), WireError::TooLarge);
  // The limit is a parameter.
  auto small = bytes_of({0, 0, 0, 20});
  EXPECT_EQ(frame_startup(small, 16).error(), WireError::TooLarge);
}

TEST(FrameBuffer, PopsSeveralFramesFromOneRead) {
  FrameBuffer buf;
  auto stream = bytes_of({'P', 0, 0, 0, 4, 'B', 0, 0, 0, 5, 7, 'S', 0, 0, 0, 4, 'Q', 0});
  buf.append(stream);
  auto a = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(a && *a);
  EXPECT_EQ((*a)->type, 'P');
  auto b = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(b && *b);
  EXPECT_EQ((*b)->type, 'B');
  EXPECT_EQ(hex((*b)->body), "07");
  auto c = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->type, 'S');
  auto d = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(d.has_value());
  EXPECT_FALSE(*d);
  EXPECT_EQ(buf.need(), 3u);
  EXPECT_EQ(buf.size(), 2u);
}

TEST(FrameBuffer, ErrorLeavesBufferUntouched) {
  FrameBuffer buf;
  auto bad = bytes_of({'Q', 0, 0, 0, 2, 'x'});
  buf.append(bad);
  auto r = buf.next_typed(kMaxMessage);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), WireError::BadLength);
  EXPECT_EQ(hex(buf.pending()), hex(bad));
}

TEST(FrameBuffer, PrepareCommitAndCompaction) {
  FrameBuffer buf(16);
  // A 40-byte message written through prepare()/commit() in 7-byte reads.
  ByteVector msg = bytes_of({'d', 0, 0, 0, 39});
  for (int i = 0; i < 35; ++i) {
    msg.push_back(std::byte(i));
  }
  ByteVector stream = msg;
  stream.insert(stream.end(), msg.begin(), msg.end());
  std::size_t fed = 0;
  int frames = 0;
  while (fed < stream.size()) {
    auto space = buf.prepare(7);
    ASSERT_GE(space.size(), 7u);
    std::size_t n = std::min<std::size_t>(7, stream.size() - fed);
    std::copy_n(stream.begin() + static_cast<std::ptrdiff_t>(fed), n, space.begin());
    buf.commit(n);
    fed += n;
    while (auto f = buf.next_typed(kMaxMessage)) {
      if (!*f) {
        break;
      }
      EXPECT_EQ(hex((*f)->whole), hex(msg));
      ++frames;
    }
  }
  EXPECT_EQ(frames, 2);
  EXPECT_TRUE(buf.empty());
  EXPECT_GE(buf.capacity(), 40u);
  buf.shrink_if_idle();
  EXPECT_EQ(buf.capacity(), 16u);
}

TEST(FrameBuffer, ReusesStorageWithoutGrowing) {
  FrameBuffer buf(64);
  auto msg = bytes_of({'Q', 0, 0, 0, 6, 'x', 0});
  for (int i = 0; i < 1000; ++i) {
    buf.append(msg);
    auto f = buf.next_typed(kMaxMessage);
    ASSERT_TRUE(f && *f);
  }
  EXPECT_EQ(buf.capacity(), 64u);
}

TEST(FrameBuffer, CompactKeepsPartialMessage) {
  FrameBuffer buf(32);
  auto stream = bytes_of({'S', 0, 0, 0, 4, 'Q', 0, 0, 0, 6, 'x'});
  buf.append(stream);
  ASSERT_TRUE(*buf.next_typed(kMaxMessage));
  EXPECT_FALSE(*buf.next_typed(kMaxMessage));
  buf.compact();
  buf.append(bytes_of({0}));
  auto f = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(f && *f);
  EXPECT_EQ(hex((*f)->body), "7800");
}

TEST(FrameBuffer, StartupThenTyped) {
  // After the startup packet the same buffer carries typed messages.
  auto stream = bytes_of({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30, 'X', 0, 0, 0, 4});
  FrameBuffer buf;
  buf.append(stream);
  auto s = buf.next_startup();
  ASSERT_TRUE(s && *s);
  EXPECT_EQ(hex((*s)->body), "04d21630");
  auto t = buf.next_typed(kMaxMessage);
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->type, 'X');
}

TEST(FrameBuffer, FragmentHelperSeesEveryFrame) {
  auto stream = bytes_of({'1', 0, 0, 0, 4, '2', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'I'});
  std::vector<char> types;
  test::feed_in_fragments(stream, 1, test::Phase::Typed, kMaxMessage,
                          [&](const Frame& f) { types.push_back(f.type); });
  EXPECT_EQ(types, (std::vector<char>{'1', '2', 'Z'}));
  test::for_each_fragmentation(stream, test::Phase::Typed, 3, [](const Frame&) {});
}

TEST(FrameBuffer, OversizeDetectedWhileFragmented) {
  FrameBuffer buf(16);
  auto header = bytes_of({'p', 0, 1, 0, 0});
  for (std::size_t i = 0; i < header.size(); ++i) {
    buf.append(Bytes(header).subspan(i, 1));
    auto r = buf.next_typed(kMaxAuthMessage);
    if (i + 1 < header.size()) {
      ASSERT_TRUE(r.has_value());
    } else {
      ASSERT_FALSE(r.has_value());
      EXPECT_EQ(r.error(), WireError::TooLarge);
    }
  }
  EXPECT_EQ(buf.capacity(), 16u);  // nothing was reserved for the bogus length
}

TEST(FrameBuffer, ClearReleasesGrowth) {
  FrameBuffer buf(16);
  ByteVector big(1000, std::byte{1});
  buf.append(big);
  EXPECT_GE(buf.capacity(), 1000u);
  buf.shrink_if_idle();  // not idle: keeps the data
  EXPECT_EQ(buf.size(), 1000u);
  buf.clear();
  EXPECT_TRUE(buf.empty());
  EXPECT_EQ(buf.capacity(), 16u);
  EXPECT_EQ(buf.need(), 0u);
}

// A password message that was popped (and one still pending) must not survive wipe(): every
// byte of the storage is zero afterwards, and the buffer is empty.
TEST(FrameBuffer, WipeZeroesEveryByte) {
  FrameBuffer buf(64);
  const std::string secret = "hunter2-hunter2";
  ByteVector msg{std::byte{'p'}, std::byte{0}, std::byte{0}, std::byte{0},
                 std::byte{static_cast<unsigned char>(4 + secret.size() + 1)}};
  for (char c : secret) {
    msg.push_back(static_cast<std::byte>(c));
  }
  msg.push_back(std::byte{0});
  buf.append(msg);
  buf.append(msg);
  auto frame = buf.next_typed(1000);
  ASSERT_TRUE(frame && *frame);
  ASSERT_FALSE(buf.empty());
  const std::size_t capacity = buf.capacity();
  buf.wipe();
  EXPECT_TRUE(buf.empty());
  EXPECT_EQ(buf.need(), 0u);
  auto all = buf.prepare(capacity);
  ASSERT_EQ(all.size(), capacity);  // no growth: this is the storage the secret was in
  for (std::byte b : all) {
    ASSERT_EQ(b, std::byte{0});
  }
}

TEST(FrameBuffer, LargeMessageAcrossManyReads) {
  // A 1 MiB CopyData arriving in 1000-byte reads: framed once, byte-exact.
  ByteVector msg = bytes_of({'d', 0, 0x10, 0, 4});
  msg.resize(1 + 0x100004, std::byte{0x5a});
  std::size_t frames = 0;
  test::feed_in_fragments(msg, 1000, test::Phase::Typed, kMaxMessage, [&](const Frame& f) {
    EXPECT_EQ(f.body.size(), 0x100000u);
    ++frames;
  });
  EXPECT_EQ(frames, 1u);
}

}  // namespace
}  // namespace pgwarden::wire
