#include "wire/framer.h"

#include <string.h>  // explicit_bzero

#include <algorithm>
#include <cstring>

namespace pgwarden::wire {
namespace {

std::uint32_t load_u32(Bytes b) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) {
    v = (v << 8) | std::to_integer<std::uint32_t>(b[i]);
  }
  return v;
}

// Minimum declared lengths: a typed message is at least its length word; a startup packet
// is at least its length word and its request code.
constexpr std::uint32_t kMinTypedLength = 4;
constexpr std::uint32_t kMinStartupLength = 8;

}  // namespace

std::expected<std::optional<TypedHeader>, WireError> peek_typed_header(Bytes data,
                                                                       std::uint32_t max_length) {
  if (data.size() < 5) {
    return std::optional<TypedHeader>{};
  }
  TypedHeader h{static_cast<char>(data[0]), load_u32(data.subspan(1, 4))};
  // Checked before any body byte is buffered: a bogus length must cost us nothing.
  if (h.length < kMinTypedLength) {
    return std::unexpected(WireError::BadLength);
  }
  if (h.length > max_length) {
    return std::unexpected(WireError::TooLarge);
  }
  return std::optional<TypedHeader>{h};
}

std::expected<FrameResult, WireError> frame_typed(Bytes data, std::uint32_t max_length) {
  auto header = peek_typed_header(data, max_length);
  if (!header) {
    return std::unexpected(header.error());
  }
  if (!*header) {
    return FrameResult{std::nullopt, 5 - data.size()};
  }
  std::size_t total = (*header)->total();
  if (data.size() < total) {
    return FrameResult{std::nullopt, total - data.size()};
  }
  Frame f{(*header)->type, data.subspan(5, total - 5), data.first(total)};
  return FrameResult{f, 0};
}

std::expected<FrameResult, WireError> frame_startup(Bytes data, std::uint32_t max_length) {
  if (data.size() < 4) {
    return FrameResult{std::nullopt, 4 - data.size()};
  }
  std::uint32_t length = load_u32(data.first(4));
  if (length < kMinStartupLength) {
    return std::unexpected(WireError::BadLength);
  }
  if (length > max_length) {
    return std::unexpected(WireError::TooLarge);
  }
  if (data.size() < length) {
    return FrameResult{std::nullopt, length - data.size()};
  }
  Frame f{kUntyped, data.subspan(4, length - 4), data.first(length)};
  return FrameResult{f, 0};
}

namespace {

// explicit_bzero: a memset the compiler may not remove as a dead store.
void zero(ByteVector& v) {
  if (!v.empty()) {
    explicit_bzero(v.data(), v.size());
  }
}

}  // namespace

FrameBuffer::FrameBuffer(std::size_t initial_capacity)
    : storage_(initial_capacity), initial_capacity_(initial_capacity) {}

void FrameBuffer::reserve_tail(std::size_t n) {
  if (storage_.size() - end_ >= n) {
    return;
  }
  compact();
  if (storage_.size() - end_ >= n) {
    return;
  }
  // Grow geometrically so a large message costs O(log n) reallocations, not one per read.
  std::size_t wanted = end_ + n;
  std::size_t grown = std::max(wanted, storage_.size() + storage_.size() / 2);
  // Not resize(): that would free the old allocation with the received bytes still in it.
  ByteVector bigger(grown);
  std::memcpy(bigger.data(), storage_.data(), end_);
  zero(storage_);
  storage_.swap(bigger);
}

void FrameBuffer::append(Bytes data) {
  if (data.empty()) {
    return;
  }
  reserve_tail(data.size());
  std::memcpy(storage_.data() + end_, data.data(), data.size());
  end_ += data.size();
}

std::span<std::byte> FrameBuffer::prepare(std::size_t min_size) {
  reserve_tail(std::max<std::size_t>(min_size, 1));
  return std::span<std::byte>(storage_).subspan(end_);
}

void FrameBuffer::commit(std::size_t n) {
  end_ += std::min(n, storage_.size() - end_);
}

std::expected<std::optional<Frame>, WireError> FrameBuffer::pop(
    std::expected<FrameResult, WireError> r) {
  if (!r) {
    return std::unexpected(r.error());
  }
  need_ = r->need;
  if (r->frame) {
    begin_ += r->frame->whole.size();
    if (begin_ == end_) {
      // Nothing pending: restart at the front so the next read needs no compaction. The
      // popped frame stays valid: its bytes are only overwritten by the next append/prepare.
      begin_ = end_ = 0;
    }
  }
  return r->frame;
}

std::expected<std::optional<Frame>, WireError> FrameBuffer::next_typed(std::uint32_t max_length) {
  return pop(frame_typed(pending(), max_length));
}

std::expected<std::optional<Frame>, WireError> FrameBuffer::next_startup(std::uint32_t max_length) {
  return pop(frame_startup(pending(), max_length));
}

void FrameBuffer::compact() {
  if (begin_ == 0) {
    return;
  }
  std::size_t n = end_ - begin_;
  if (n > 0) {
    std::memmove(storage_.data(), storage_.data() + begin_, n);
  }
  begin_ = 0;
  end_ = n;
}

void FrameBuffer::clear() {
  begin_ = end_ = 0;
  need_ = 0;
  shrink_if_idle();
}

void FrameBuffer::shrink_if_idle() {
  if (!empty() || storage_.size() <= initial_capacity_) {
    return;
  }
  ByteVector fresh(initial_capacity_);
  zero(storage_);
  storage_.swap(fresh);
  begin_ = end_ = 0;
}

void FrameBuffer::wipe() {
  zero(storage_);
  begin_ = end_ = 0;
  need_ = 0;
}

}  // namespace pgwarden::wire
