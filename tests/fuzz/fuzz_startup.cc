// Fuzzes the startup phase: first-byte classification, startup-packet framing and
// decode_startup. A packet that decodes must re-encode to exactly its original bytes and
// decode again to an equal value. Byte 0 sets the parameter-count limit so BadCount is
// reachable with small inputs.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "wire/framer.h"
#include "wire/startup.h"

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
  const std::size_t max_parameters = data[0] % (kMaxStartupParameters + 1);
  Bytes stream(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  auto kind = classify_first_bytes(stream);
  check((kind == FirstBytes::NeedMore) == stream.empty());
  if (kind == FirstBytes::TlsClientHello) {
    // Never a valid startup packet: the framer must refuse it rather than wait.
    auto r = frame_startup(stream);
    check(!r.has_value() || !r->frame);
    if (stream.size() >= 4) {
      check(!r.has_value());
    }
  }
  ByteVector out;
  while (!stream.empty()) {
    auto r = frame_startup(stream);
    if (!r || !r->frame) {
      break;
    }
    const Frame f = *r->frame;
    stream = stream.subspan(f.whole.size());
    auto p = decode_startup(f.body, max_parameters);
    if (!p) {
      continue;
    }
    if (auto* m = std::get_if<StartupMessage>(&*p)) {
      check(m->major == 3 && m->parameters.size() <= max_parameters);
    }
    out.clear();
    encode(*p, out);
    check(out.size() == f.whole.size() && std::equal(out.begin(), out.end(), f.whole.begin()));
    auto again = frame_startup(out);
    check(again && again->frame);
    auto p2 = decode_startup(again->frame->body, max_parameters);
    check(p2 && *p2 == *p);
  }
  return 0;
}
