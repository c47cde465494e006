// Every way a byte sequence from the wire can be wrong. Decoders return
// std::expected<T, WireError>; they never throw. to_string() gives the text that goes into
// the FATAL 08P01 ErrorResponse, so it names the fault and never echoes wire content.
#pragma once

#include <cstdint>
#include <string_view>

namespace pgwarden::wire {

enum class WireError : std::uint8_t {
  ShortMessage,       // fewer bytes than a field needs
  BadLength,          // declared length below the minimum (4) or inconsistent
  TooLarge,           // declared length above the configured limit
  TrailingBytes,      // bytes left after the last field of a message
  MissingTerminator,  // a C string without its NUL
  BadCount,           // a count from the wire that cannot fit in the remaining bytes
  BadValue,           // a field value outside its domain (format code, status byte, ...)
  UnknownMessage,     // a type byte that is not valid in this direction/phase
  UnknownProtocol,    // a startup-packet code that is not a known protocol or request
  UnexpectedMessage,  // a valid message that the protocol state does not allow here
};

constexpr std::string_view to_string(WireError e) {
  switch (e) {
    case WireError::ShortMessage:
      return "message is shorter than its fields";
    case WireError::BadLength:
      return "invalid message length";
    case WireError::TooLarge:
      return "message exceeds the size limit";
    case WireError::TrailingBytes:
      return "unexpected bytes after the end of the message";
    case WireError::MissingTerminator:
      return "string is missing its terminator";
    case WireError::BadCount:
      return "invalid field count";
    case WireError::BadValue:
      return "invalid field value";
    case WireError::UnknownMessage:
      return "unknown message type";
    case WireError::UnknownProtocol:
      return "unsupported protocol version or request code";
    case WireError::UnexpectedMessage:
      return "unexpected message for the protocol state";
  }
  return "invalid message";
}

}  // namespace pgwarden::wire
