// Decoding and encoding of startup-phase packets: StartupMessage (protocol 3.x),
// SSLRequest, GSSENCRequest and CancelRequest, plus detection of a TLS ClientHello sent as
// the very first bytes (PostgreSQL 17 direct SSL, `sslnegotiation=direct`).
//
// decode_startup() takes the body of a packet framed by frame_startup() (the bytes after
// the length word, beginning with the request code). Decoded structs hold string_views and
// byte views into that body: they are valid only as long as the caller's buffer is.
//
// Protocol versions: any 3.x is decoded (minor kept as sent) so the caller can answer a
// minor version it does not implement with NegotiateProtocolVersion; any other major, and
// any 1234.x code that is not one of the three requests, is UnknownProtocol.
// Parameters are kept in wire order; names beginning with "_pq_." are protocol options
// (StartupParameter::is_protocol_option). A name may appear only once: PostgreSQL keeps the
// last duplicate while a naive reader keeps the first, a classic parser differential for
// `user`/`database`, so a duplicate is BadValue. CancelRequest carries the secret key as a
// view; the caller owns (and should wipe) the buffer behind it.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "wire/bytes.h"
#include "wire/error.h"
#include "wire/limits.h"
#include "wire/message_type.h"
#include "wire/messages_common.h"

namespace pgwarden::wire {

// First byte of a TLS handshake record (ContentType handshake = 22).
inline constexpr std::byte kTlsHandshakeRecord{0x16};
inline constexpr std::string_view kProtocolOptionPrefix = "_pq_.";

struct StartupParameter {
  std::string_view name;
  std::string_view value;
  bool is_protocol_option() const { return name.starts_with(kProtocolOptionPrefix); }
  bool operator==(const StartupParameter&) const = default;
};

struct StartupMessage {
  std::uint16_t major = 3;
  std::uint16_t minor = 0;
  std::vector<StartupParameter> parameters;  // wire order, protocol options included

  std::uint32_t version() const { return (std::uint32_t{major} << 16) | minor; }
  // True for the versions this codec implements fully (3.0 and 3.2).
  bool is_supported_version() const { return version() == kProtocol30 || version() == kProtocol32; }
  // The value of an ordinary parameter or protocol option, nullopt when absent.
  std::optional<std::string_view> find(std::string_view name) const;
  bool has_protocol_options() const;
  bool operator==(const StartupMessage&) const = default;
};

struct SslRequest {
  bool operator==(const SslRequest&) const = default;
};
struct GssEncRequest {
  bool operator==(const GssEncRequest&) const = default;
};
struct CancelRequest {
  std::uint32_t process_id = 0;
  ByteView secret_key;  // kMinCancelKey..kMaxCancelKey bytes (3.0 clients send exactly 4)
  bool operator==(const CancelRequest&) const = default;
};

using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest>;

// What the first bytes of a fresh connection are.
enum class FirstBytes : std::uint8_t {
  NeedMore,        // nothing received yet
  TlsClientHello,  // a TLS record: switch to TLS now (direct SSL); no SSLRequest came first
  Postgres,        // a startup-phase packet: frame it with frame_startup()
};
// A startup packet's first byte is the high byte of a length <= kMaxStartupPacket, i.e. 0,
// so 0x16 cannot be a valid PostgreSQL packet and the test is unambiguous.
FirstBytes classify_first_bytes(Bytes data);

std::expected<StartupPacket, WireError> decode_startup(
    Bytes body, std::size_t max_parameters = kMaxStartupParameters);
std::expected<StartupMessage, WireError> parse_startup_message(
    Bytes body, std::size_t max_parameters = kMaxStartupParameters);
std::expected<CancelRequest, WireError> parse_cancel_request(Bytes body);

// Each writes the whole packet including its length word.
void encode(const StartupMessage& m, ByteVector& out);
void encode(const SslRequest& m, ByteVector& out);
void encode(const GssEncRequest& m, ByteVector& out);
void encode(const CancelRequest& m, ByteVector& out);
void encode(const StartupPacket& m, ByteVector& out);

}  // namespace pgwarden::wire
