// Fuzzes the frontend decoders behind the typed framer. Byte 0 picks the AuthResponseKind for
// 'p'; the rest is a stream of typed messages. Every message that decodes must re-encode to
// exactly its original bytes (the encoding is canonical), and decoding that again must give
// an equal value.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "wire/framer.h"
#include "wire/frontend.h"

using namespace pgwarden::wire;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const auto auth = static_cast<AuthResponseKind>(data[0] % 5);
  Bytes stream(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  ByteVector out;
  while (!stream.empty()) {
    auto r = frame_typed(stream, kMaxMessage);
    if (!r || !r->frame) {
      break;
    }
    const Frame f = *r->frame;
    stream = stream.subspan(f.whole.size());
    auto m = decode_frontend(f.type, f.body, auth);
    // UnknownMessage exactly for the type bytes this direction never sends.
    check(is_frontend_type(f.type) == (m || m.error() != WireError::UnknownMessage));
    if (!m) {
      continue;
    }
    out.clear();
    encode(*m, out);
    check(out.size() == f.whole.size() && std::equal(out.begin(), out.end(), f.whole.begin()));
    auto again = frame_typed(out, kMaxMessage);
    check(again && again->frame);
    auto m2 = decode_frontend(again->frame->type, again->frame->body, auth);
    check(m2 && *m2 == *m);
  }
  return 0;
}
