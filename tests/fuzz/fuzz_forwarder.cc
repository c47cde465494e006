// Fuzzes session::Forwarder, the scanner on the data path. The same stream is scanned in one
// piece and driven through the caller contract of forwarder.h in fuzzer-chosen read sizes;
// both must agree exactly, and an independent walk over the message headers must explain
// everything the Forwarder let through.
//
// Input: byte 0 bit 0 selects the direction (0 client, 1 server), bits 1..7 the read size
// (1..128); byte 1 a small message-length limit (4..4084) so the limit is reachable; the rest
// is the stream.
//
// Properties checked (trap on violation):
//   - one scan and fragmented scans: same verdict, same observations (types, ReadyForQuery
//     bodies) in the same order, same number of bytes forwarded, and the rest kept;
//   - what is forwarded is a prefix of the input, never more than it, and what is kept
//     between reads is at most one incomplete header or one incomplete ReadyForQuery, never
//     while a body is being streamed;
//   - every reported message begins at a header boundary of the forwarded bytes, has a type
//     allowed in its direction and a length within the limit, and the forwarded prefix ends
//     either at a message boundary or inside the body of a streamed (not held) message,
//     exactly when mid_message() says so.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "session/forwarder.h"
#include "wire/bytes.h"

using namespace pgwarden;
using session::Direction;
using session::Forwarder;
using session::Observed;
using wire::Bytes;
using wire::ByteVector;

namespace {

// From the protocol documentation, not from the Forwarder's own table.
constexpr std::string_view kClientTypes = "QPBEDCSHFdcfX";
constexpr std::string_view kServerTypes = "Z123ACDEGHINSTVWcdnst";

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

struct Seen {
  char type;
  ByteVector body;
  bool operator==(const Seen&) const = default;
};

std::uint32_t length_at(Bytes b, std::size_t pos) {
  return (std::to_integer<std::uint32_t>(b[pos + 1]) << 24) |
         (std::to_integer<std::uint32_t>(b[pos + 2]) << 16) |
         (std::to_integer<std::uint32_t>(b[pos + 3]) << 8) |
         std::to_integer<std::uint32_t>(b[pos + 4]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) {
    return 0;
  }
  const Direction direction = (data[0] & 1) != 0 ? Direction::FromServer : Direction::FromClient;
  const std::size_t fragment = (data[0] >> 1) + 1;
  const std::uint32_t limit = 4u + data[1] * 16u;
  const Bytes stream(reinterpret_cast<const std::byte*>(data) + 2, size - 2);
  const std::string_view allowed = direction == Direction::FromServer ? kServerTypes : kClientTypes;

  auto recorder = [](std::vector<Seen>& seen) {
    return [&seen](const Observed& m) { seen.push_back({m.type, {m.body.begin(), m.body.end()}}); };
  };

  // Reference: one scan over everything.
  Forwarder whole(direction, limit);
  std::vector<Seen> ref_seen;
  auto ref = whole.scan(stream, recorder(ref_seen));
  if (ref) {
    check(ref->forward <= stream.size());
  }

  // The caller contract, one read at a time.
  Forwarder pieces(direction, limit);
  std::vector<Seen> seen;
  ByteVector buffer;
  std::size_t forwarded = 0;
  std::size_t fed = 0;
  bool failed = false;
  while (fed < stream.size()) {
    const std::size_t n = std::min(fragment, stream.size() - fed);
    buffer.insert(buffer.end(), stream.begin() + static_cast<std::ptrdiff_t>(fed),
                  stream.begin() + static_cast<std::ptrdiff_t>(fed + n));
    fed += n;
    auto r = pieces.scan(buffer, recorder(seen));
    if (!r) {
      failed = true;
      break;
    }
    check(r->forward <= buffer.size());
    // The forwarded bytes are the next bytes of the input (the buffer is always the input's
    // unforwarded tail).
    check(std::equal(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->forward),
                     stream.begin() + static_cast<std::ptrdiff_t>(forwarded)));
    forwarded += r->forward;
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->forward));
    if (!buffer.empty()) {
      check(!pieces.mid_message());
      check(buffer.size() <= session::kMaxWatchedMessage);
      if (buffer.size() >= 5) {
        check(direction == Direction::FromServer && static_cast<char>(buffer[0]) == 'Z');
        check(buffer.size() < std::size_t{length_at(buffer, 0)} + 1);
      }
    }
  }
  check(failed == !ref.has_value());
  check(seen == ref_seen);
  if (ref) {
    check(forwarded == ref->forward);
    check(buffer.size() == stream.size() - ref->forward);
    check(pieces.mid_message() == whole.mid_message());
  } else {
    check(forwarded <= stream.size());
  }

  // An independent walk over the headers of the bytes forwarded in one piece (or, on error,
  // of everything that was reported before it).
  const std::size_t end = ref ? ref->forward : stream.size();
  std::size_t pos = 0;
  std::size_t i = 0;
  bool inside_body = false;
  while (i < ref_seen.size()) {
    check(pos + 5 <= end);
    const char type = static_cast<char>(stream[pos]);
    const std::uint32_t length = length_at(stream, pos);
    check(ref_seen[i].type == type);
    check(allowed.find(type) != std::string_view::npos);
    check(length >= 4 && length <= limit);
    const bool held = direction == Direction::FromServer && type == 'Z';
    if (held) {
      check(length <= session::kMaxWatchedMessage);
      check(pos + length + 1 <= end);
      check(std::equal(ref_seen[i].body.begin(), ref_seen[i].body.end(),
                       stream.begin() + static_cast<std::ptrdiff_t>(pos + 5),
                       stream.begin() + static_cast<std::ptrdiff_t>(pos + length + 1)));
    } else {
      check(ref_seen[i].body.empty());
    }
    ++i;
    if (pos + length + 1 > end) {
      // Only the last reported message may still be streaming.
      check(!held && i == ref_seen.size());
      inside_body = true;
      pos = end;
      break;
    }
    pos += std::size_t{length} + 1;
  }
  if (ref) {
    check(pos == ref->forward);
    check(inside_body == whole.mid_message());
  } else {
    // The verdict came from a complete header right after the last reported message.
    check(!inside_body && pos + 5 <= stream.size());
  }
  return 0;
}
