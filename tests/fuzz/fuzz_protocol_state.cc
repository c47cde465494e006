// Fuzz target: the protocol state machines fed an arbitrary script of framed messages.
// Record layout: flags (bit 0: from the backend, bit 1: pgwarden answers the request
// locally), type byte, body length (one byte), body. A first byte with bit 0 set starts from
// an authenticated, idle session so the fuzzer reaches the query flows quickly.
// Invariants checked: a failed machine never accepts anything again, the request counters
// stay consistent and bounded, and an idle session has nothing outstanding.
#include <cstddef>
#include <cstdint>

#include "wire/bytes.h"
#include "wire/message_type.h"
#include "wire/protocol_state.h"

using namespace pgwarden::wire;

namespace {
constexpr std::size_t kMaxPending = 16;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  ProtocolState state(kMaxPending);
  std::size_t i = 0;
  if (size > 0 && (data[0] & 1) != 0) {
    ByteVector startup;
    Writer w(startup);
    w.u32(kProtocol30);
    w.u8(0);
    ByteVector auth_ok(4);
    ByteVector idle{std::byte('I')};
    (void)state.on_frontend(ProtocolState::kStartupMessage, startup);
    (void)state.on_backend('R', auth_ok);
    (void)state.on_backend('Z', idle);
    i = 1;
  }
  while (i + 3 <= size) {
    std::uint8_t flags = data[i];
    char type = static_cast<char>(data[i + 1]);
    std::size_t len = data[i + 2];
    i += 3;
    if (len > size - i) {
      len = size - i;
    }
    Bytes body(reinterpret_cast<const std::byte*>(data + i), len);
    i += len;
    bool was_failed = state.failed();
    if ((flags & 1) != 0) {
      auto r = state.on_backend(type, body);
      if (was_failed && r) {
        __builtin_trap();
      }
    } else {
      auto r = state.on_frontend(type, body);
      if (was_failed && r) {
        __builtin_trap();
      }
      if (r && (flags & 2) != 0) {
        (void)state.answer_locally();
      }
    }
    if (state.pending_syncs() > state.pending_ready_for_query() ||
        state.pending_ready_for_query() > state.pending_requests() ||
        state.pending_requests() > kMaxPending || (state.idle() && state.pending_requests() != 0)) {
      __builtin_trap();
    }
  }
  return 0;
}
