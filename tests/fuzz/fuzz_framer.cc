// Fuzzes the framer: frame_typed/frame_startup over a whole buffer must agree exactly with
// a FrameBuffer fed the same bytes in fuzzer-chosen fragments (same frames, same errors,
// same need()), and every frame must be a contiguous, in-bounds slice of the input.
//
// Input: byte 0 selects phase (bit 0) and fragment size (bits 1..7), byte 1 a small length
// limit so TooLarge is reachable; the rest is the stream.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "wire/framer.h"

using namespace pgwarden::wire;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const bool startup = (data[0] & 1) != 0;
  const std::size_t fragment = (data[0] >> 1) + 1;
  const std::uint32_t limit = 4u + data[1] * 4u;  // 4..1024: exercises TooLarge
  Bytes stream(reinterpret_cast<const std::byte*>(data) + 2, size - 2);

  auto frame_at = [&](Bytes b) {
    return startup ? frame_startup(b, limit) : frame_typed(b, limit);
  };

  // Reference: frame the whole stream in place.
  std::size_t ref_pos = 0;
  std::optional<WireError> ref_error;
  std::size_t ref_frames = 0;
  std::size_t ref_need = 0;
  for (;;) {
    auto r = frame_at(stream.subspan(ref_pos));
    if (!r) {
      ref_error = r.error();
      break;
    }
    if (!r->frame) {
      ref_need = r->need;
      check(r->need >= 1);
      break;
    }
    const Frame& f = *r->frame;
    check(f.whole.data() == stream.data() + ref_pos);
    check(f.body.data() + f.body.size() == f.whole.data() + f.whole.size());
    check(f.whole.size() - f.body.size() == (startup ? 4u : 5u));
    check(f.whole.size() <= std::size_t{limit} + (startup ? 0u : 1u));
    ref_pos += f.whole.size();
    ++ref_frames;
  }

  // The same stream through a FrameBuffer in fragments.
  FrameBuffer buffer(32);
  std::size_t fed = 0;
  std::size_t pos = 0;
  std::size_t frames = 0;
  std::optional<WireError> error;
  while (fed < stream.size() && !error) {
    std::size_t n = std::min(fragment, stream.size() - fed);
    buffer.append(stream.subspan(fed, n));
    fed += n;
    for (;;) {
      auto r = startup ? buffer.next_startup(limit) : buffer.next_typed(limit);
      if (!r) {
        error = r.error();
        break;
      }
      if (!*r) {
        break;
      }
      const Frame& f = **r;
      check(pos + f.whole.size() <= stream.size());
      check(std::equal(f.whole.begin(), f.whole.end(), stream.begin() + pos));
      pos += f.whole.size();
      ++frames;
    }
  }
  check(frames == ref_frames);
  check(pos == ref_pos);
  check(error == ref_error);
  if (!error && !stream.empty()) {  // with no input, next_* was never called
    check(buffer.size() == stream.size() - ref_pos);
    check(buffer.need() == ref_need);
  }
  return 0;
}
