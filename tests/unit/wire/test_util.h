// Test helpers shared by the wire unit tests.
//
// The central one is for_each_fragmentation(): it feeds a byte stream through a FrameBuffer
// in fragments of 1, 2, 5 and 100 bytes and in one piece, and hands every complete frame to
// a callback, so each decoder test also proves the decoder works behind the framer however
// the bytes arrive. It fails the test if a frame is popped before its last byte arrived, if
// the framer's need() is inconsistent, or if bytes are left over at the end.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "wire/bytes.h"
#include "wire/framer.h"
#include "wire/limits.h"

namespace pgwarden::wire::test {

enum class Phase { Startup, Typed };

inline constexpr std::size_t kFragmentSizes[] = {1, 2, 5, 100, SIZE_MAX};

// Bytes from a list of small integers or chars: bytes_of({'Q', 0, 0, 0, 5, 0}).
inline ByteVector bytes_of(std::initializer_list<int> values) {
  ByteVector out;
  for (int v : values) {
    out.push_back(static_cast<std::byte>(v & 0xff));
  }
  return out;
}

inline ByteVector bytes_of(std::string_view s) {
  auto b = as_bytes(s);
  return ByteVector(b.begin(), b.end());
}

inline ByteVector concat(std::initializer_list<Bytes> parts) {
  ByteVector out;
  for (auto p : parts) {
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

inline std::string hex(Bytes b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (auto x : b) {
    auto v = std::to_integer<unsigned>(x);
    s.push_back(kDigits[v >> 4]);
    s.push_back(kDigits[v & 15]);
  }
  return s;
}

// Feeds `stream` in fragments of `fragment` bytes; calls on_frame(const Frame&) for each
// complete frame, in order. Returns the number of frames. Framing errors fail the test.
template <typename OnFrame>
std::size_t feed_in_fragments(Bytes stream, std::size_t fragment, Phase phase,
                              std::uint32_t max_length, OnFrame&& on_frame) {
  FrameBuffer buffer(64);  // small on purpose: exercises growth and compaction
  std::size_t frames = 0;
  std::size_t consumed = 0;  // bytes of the stream covered by frames so far
  std::size_t fed = 0;
  while (fed < stream.size()) {
    std::size_t n = std::min(fragment, stream.size() - fed);
    buffer.append(stream.subspan(fed, n));
    fed += n;
    for (;;) {
      auto next =
          phase == Phase::Typed ? buffer.next_typed(max_length) : buffer.next_startup(max_length);
      if (!next) {
        ADD_FAILURE() << "framing error " << static_cast<int>(next.error()) << " at fragment "
                      << fragment;
        return frames;
      }
      if (!*next) {
        // need() never promises completion too early, and while a message is partly
        // buffered it never asks for bytes beyond that message's end (a read of exactly
        // need() bytes must not block waiting for data the peer will never send).
        EXPECT_GE(buffer.need(), 1u);
        if (!buffer.empty()) {
          EXPECT_LE(buffer.size() + buffer.need(), stream.size() - consumed)
              << "need() overshoots the message at fragment " << fragment;
        }
        break;
      }
      const Frame& f = **next;
      // The frame must be exactly the next slice of the stream.
      EXPECT_EQ(hex(f.whole), hex(stream.subspan(consumed, f.whole.size())));
      EXPECT_EQ(f.whole.size() - f.body.size(), phase == Phase::Typed ? 5u : 4u);
      consumed += f.whole.size();
      ++frames;
      on_frame(f);
    }
  }
  EXPECT_EQ(consumed, stream.size()) << "bytes left unframed at fragment " << fragment;
  EXPECT_TRUE(buffer.empty());
  return frames;
}

// Runs feed_in_fragments for every size in kFragmentSizes and checks the frame count.
template <typename OnFrame>
void for_each_fragmentation(Bytes stream, Phase phase, std::size_t expected_frames,
                            OnFrame&& on_frame, std::uint32_t max_length = 0) {
  if (max_length == 0) {
    max_length = phase == Phase::Typed ? kMaxMessage : kMaxStartupPacket;
  }
  for (std::size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(testing::Message() << "fragment size " << fragment);
    auto n = feed_in_fragments(stream, fragment, phase, max_length, on_frame);
    EXPECT_EQ(n, expected_frames);
  }
}

}  // namespace pgwarden::wire::test
