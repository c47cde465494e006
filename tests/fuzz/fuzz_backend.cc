// Fuzzes the backend decoders behind the typed framer. The input is a stream of typed
// messages. Every message that decodes must re-encode to exactly its original bytes (the
// encoding is canonical) and decode again to an equal value; for DataRow the allocation-free
// for_each_column must agree with parse_data_row.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "wire/backend.h"
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
  Bytes stream(reinterpret_cast<const std::byte*>(data), size);
  ByteVector out;
  while (!stream.empty()) {
    auto r = frame_typed(stream, kMaxMessage);
    if (!r || !r->frame) {
      break;
    }
    const Frame f = *r->frame;
    stream = stream.subspan(f.whole.size());
    auto m = decode_backend(f.type, f.body);
    // UnknownMessage exactly for the type bytes this direction never sends.
    check(is_backend_type(f.type) == (m || m.error() != WireError::UnknownMessage));
    if (f.type == 'D') {
      std::vector<std::optional<ByteView>> cols;
      auto walked = for_each_column(
          f.body, [&](std::size_t, std::optional<ByteView> v) { cols.push_back(v); });
      check(walked.has_value() == m.has_value());
      if (m) {
        check(cols == std::get<DataRow>(*m).values);
      }
    }
    if (!m) {
      continue;
    }
    out.clear();
    encode(*m, out);
    check(out.size() == f.whole.size() && std::equal(out.begin(), out.end(), f.whole.begin()));
    auto again = frame_typed(out, kMaxMessage);
    check(again && again->frame);
    auto m2 = decode_backend(again->frame->type, again->frame->body);
    check(m2 && *m2 == *m);
  }
  return 0;
}
