// Streaming, sans-I/O message framing for the PostgreSQL protocol 3.x.
//
// Two shapes exist on the wire: startup-phase packets (int32 length, then the body; the
// length counts itself) and typed messages (one type byte, int32 length counting itself but
// not the type byte, then the body). The free functions look at the front of a buffer the
// caller owns and either return a Frame of views into it, or say how many more bytes are
// needed before anything can be decided. They never copy and never allocate.
//
// Limits are parameters and are enforced as soon as the length word is visible: a peer
// declaring 1 GiB is refused after 4 (or 5) bytes, not after we have buffered 1 GiB.
// Declared lengths below the minimum (4 typed, 8 startup) are BadLength.
//
// FrameBuffer is a small owning accumulation buffer for a read loop: append what the socket
// produced (or read straight into prepare()/commit()), pop complete frames, and let it compact
// itself. It reuses one allocation across messages: it grows only to hold the largest
// message framed so far (never more than the limit passed, plus one read), so there is no
// per-message heap allocation; shrink_if_idle() gives memory back after a huge message. A
// proxy that would rather not buffer a large DataRow/CopyData whole can use
// peek_typed_header() and stream the body through. Frames popped from a FrameBuffer point
// into it and stay valid until the next call to a mutating member (append, prepare, commit,
// compact, clear, shrink_if_idle).
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>

#include "wire/bytes.h"
#include "wire/error.h"
#include "wire/limits.h"

namespace pgwarden::wire {

// Startup packets have no type byte; Frame::type is this value for them.
inline constexpr char kUntyped = '\0';

struct Frame {
  char type = kUntyped;  // the type byte, or kUntyped for a startup-phase packet
  Bytes body;            // the bytes after the length word
  Bytes whole;           // the complete message (type, length, body): forward it unchanged
};

// Header of a typed message, available as soon as its first 5 bytes are.
struct TypedHeader {
  char type = kUntyped;
  std::uint32_t length = 0;  // the declared length (counts itself, not the type byte)
  std::size_t total() const { return std::size_t{length} + 1; }  // bytes on the wire
};

// Outcome of looking at the front of a buffer: a complete frame, or the number of bytes still
// missing (at least 1) before the framer can make progress.
struct FrameResult {
  std::optional<Frame> frame;
  std::size_t need = 0;
};

// Frames one typed message at the front of `data`. `max_length` bounds the declared length
// (use kMaxAuthMessage before AuthenticationOk and kMaxMessage after).
std::expected<FrameResult, WireError> frame_typed(Bytes data, std::uint32_t max_length);

// Frames one startup-phase packet (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)
// at the front of `data`; `max_length` bounds the declared length (kMaxStartupPacket).
std::expected<FrameResult, WireError> frame_startup(Bytes data,
                                                    std::uint32_t max_length = kMaxStartupPacket);

// Validates the 5-byte header of a typed message without needing its body, so a proxy can
// stream a large message (CopyData, DataRow) through in pieces. nullopt: fewer than 5 bytes.
std::expected<std::optional<TypedHeader>, WireError> peek_typed_header(Bytes data,
                                                                       std::uint32_t max_length);

class FrameBuffer {
 public:
  explicit FrameBuffer(std::size_t initial_capacity = kDefaultCapacity);

  // Copies `data` in after the unconsumed bytes. Invalidates earlier frames.
  void append(Bytes data);
  // Returns at least `min_size` writable bytes after the unconsumed ones (for a direct socket
  // read); commit(n) then marks the first n of them as received. Invalidates earlier frames.
  std::span<std::byte> prepare(std::size_t min_size);
  void commit(std::size_t n);

  // Pops the next complete typed message / startup packet, nullopt if incomplete. After an
  // error the buffer is unchanged; the connection must be closed (the stream is out of sync).
  std::expected<std::optional<Frame>, WireError> next_typed(std::uint32_t max_length);
  std::expected<std::optional<Frame>, WireError> next_startup(
      std::uint32_t max_length = kMaxStartupPacket);

  // Bytes still missing for the message at the front, as of the last next_* call (0 if the
  // last call produced a frame or none was made).
  std::size_t need() const { return need_; }
  // Received but not yet popped bytes (e.g. to detect bytes sent after SSLRequest).
  Bytes pending() const { return Bytes(storage_).subspan(begin_, end_ - begin_); }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return size() == 0; }
  std::size_t capacity() const { return storage_.size(); }

  // Moves unconsumed bytes to the front, reclaiming the space of popped frames.
  void compact();
  // Drops everything, and releases memory above the initial capacity (after a huge message).
  void clear();
  // Releases memory above the initial capacity if nothing is pending; call when idle.
  void shrink_if_idle();
  // Overwrites every byte of the storage with zeros (in a way the compiler may not elide) and
  // drops everything: for buffers that held a password, a SCRAM proof or a cancel secret.
  // The buffer never leaves received bytes behind in memory it frees either: growing and
  // shrinking zero the old allocation first.
  void wipe();

  static constexpr std::size_t kDefaultCapacity = 16 * 1024;

 private:
  void reserve_tail(std::size_t n);
  // Consumes the frame found at the front of pending(), if any, and records need().
  std::expected<std::optional<Frame>, WireError> pop(std::expected<FrameResult, WireError> r);

  ByteVector storage_;
  std::size_t initial_capacity_;
  std::size_t begin_ = 0;  // first unconsumed byte
  std::size_t end_ = 0;    // one past the last received byte
  std::size_t need_ = 0;
};

}  // namespace pgwarden::wire
