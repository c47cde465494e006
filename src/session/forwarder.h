// The hot path: a streaming scanner over bytes read from one side of an established session,
// which decides how many of them may be forwarded unchanged to the other side right now.
//
// It frames typed messages without buffering their bodies: once a message's 5-byte header
// has been validated (type byte allowed in this direction, declared length within the limit)
// its body is passed through in whatever pieces the socket delivers, so a 1 GiB DataRow or a
// long COPY stream never needs more memory than one read buffer. Only the few message types
// the session has to watch (see Watch) are held back until they are complete, and those are
// small by construction (their length is capped by kMaxWatchedMessage).
//
// Contract for the caller's read loop: append received bytes to a buffer, call scan() on the
// whole unconsumed buffer, forward the first `forward` bytes of it, keep the rest (at most
// one incomplete header or watched message) at the front of the buffer, and read again.
// Every watched message that completed is reported through the callback before scan()
// returns, in wire order. scan() never copies and never allocates.
//
// Fail closed: a bad type byte or length is an error; the bytes before it were valid and may
// still be forwarded, but the connection must then be ended with 08P01.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>

#include "wire/bytes.h"

namespace pgwarden::session {

enum class Direction : std::uint8_t { FromClient, FromServer };

// Messages the session observes on an established connection:
//   from the client: Query 'Q', Sync 'S', FunctionCall 'F' (each answered by one
//     ReadyForQuery), Execute 'E' (a statement runs), Terminate 'X', and every other message
//     as "something sent" (type 0 is never reported; see Session for the idle bookkeeping);
//   from the server: ReadyForQuery 'Z' with its body (the transaction status), and
//     ErrorResponse 'E' (type only: the session remembers the server spoke last).
// Types a peer may not send after startup (the server's 'R', 'K', 'v'; the client's 'p'
// and startup packets) are errors.
struct Observed {
  char type = 0;
  wire::Bytes body;  // the complete body for the server's 'Z'; empty otherwise
};

// Longest message held back until complete: only ReadyForQuery is (its length is 5).
inline constexpr std::uint32_t kMaxWatchedMessage = 1024;

// "'Q'" for a printable type byte, "0x01" otherwise (never raw control bytes in logs).
std::string describe_type(char type);

struct ScanResult {
  std::size_t forward = 0;  // bytes at the front that may be sent on unchanged
};

struct ScanError {
  std::string reason;  // names the type byte or the length, never message contents
};

class Forwarder {
 public:
  Forwarder(Direction direction, std::uint32_t max_message);

  // Scans `data` (the unconsumed bytes, starting where the previous scan left off).
  template <typename OnMessage>
  std::expected<ScanResult, ScanError> scan(wire::Bytes data, OnMessage&& on_message);

  // True while a message body is being streamed through (its end has not arrived).
  bool mid_message() const { return remaining_ != 0; }
  void set_max_message(std::uint32_t max_message) { max_message_ = max_message; }

 private:
  // 1: report the type, stream the body through; 2: hold the message until complete and
  // report its body. -1: type not allowed in this direction.
  int classify(char type) const;

  Direction direction_;
  std::uint32_t max_message_;
  std::uint64_t remaining_ = 0;  // body bytes of the current message still to pass through
};

template <typename OnMessage>
std::expected<ScanResult, ScanError> Forwarder::scan(wire::Bytes data, OnMessage&& on_message) {
  std::size_t pos = 0;
  const std::size_t n = data.size();
  while (pos < n) {
    if (remaining_ != 0) {
      const std::size_t take =
          static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, n - pos));
      pos += take;
      remaining_ -= take;
      continue;
    }
    if (n - pos < 5) {
      break;
    }
    const char type = static_cast<char>(data[pos]);
    const std::uint32_t length = (std::to_integer<std::uint32_t>(data[pos + 1]) << 24) |
                                 (std::to_integer<std::uint32_t>(data[pos + 2]) << 16) |
                                 (std::to_integer<std::uint32_t>(data[pos + 3]) << 8) |
                                 std::to_integer<std::uint32_t>(data[pos + 4]);
    const int watch = classify(type);
    if (watch < 0) {
      return std::unexpected(ScanError{"unexpected message type " + describe_type(type)});
    }
    if (length < 4 || length > max_message_) {
      return std::unexpected(ScanError{"invalid length " + std::to_string(length) +
                                       " for message type " + describe_type(type)});
    }
    if (watch == 2) {
      if (length > kMaxWatchedMessage) {
        return std::unexpected(ScanError{"message type " + describe_type(type) + " too long"});
      }
      if (n - pos < std::size_t{length} + 1) {
        break;  // hold it back until complete
      }
      on_message(Observed{type, data.subspan(pos + 5, length - 4)});
      pos += std::size_t{length} + 1;
      continue;
    }
    on_message(Observed{type, {}});
    pos += 5;
    remaining_ = length - 4;
  }
  return ScanResult{pos};
}

}  // namespace pgwarden::session
