// Named limits for everything pgwarden reads from the wire. Each is a default that the
// configuration may lower or raise (within the hard caps noted here); the codec takes the
// effective value as a parameter so that tests and fuzzers can shrink it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pgwarden::wire {

// PostgreSQL's own MAX_STARTUP_PACKET_LENGTH: a startup packet longer than this is refused.
inline constexpr std::uint32_t kMaxStartupPacket = 10'000;
// Any typed message, including the 4-byte length word: PostgreSQL's 1 GiB allocation cap.
inline constexpr std::uint32_t kMaxMessage = 1u << 30;
// Messages exchanged before AuthenticationOk (passwords, SASL, tokens): small by nature.
inline constexpr std::uint32_t kMaxAuthMessage = 8 * 1024;
// Cancel keys: 4 bytes in protocol 3.0, up to 256 bytes in protocol 3.2.
inline constexpr std::size_t kMinCancelKey = 4;
inline constexpr std::size_t kMaxCancelKey = 256;
// A startup packet carries at most this many name/value pairs.
inline constexpr std::size_t kMaxStartupParameters = 64;
// Columns in RowDescription/DataRow and parameters in Bind/Parse are int16 on the wire.
inline constexpr std::size_t kMaxFields = 1664;  // PostgreSQL's MaxTupleAttributeNumber
inline constexpr std::size_t kMaxParams = 65535;

}  // namespace pgwarden::wire
