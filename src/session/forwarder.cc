#include "session/forwarder.h"

#include <cstdio>

namespace pgwarden::session {

std::string describe_type(char type) {
  const auto byte = static_cast<unsigned char>(type);
  if (byte >= 0x21 && byte < 0x7f) {
    return std::string{'\'', type, '\''};
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", byte);
  return buf;
}

Forwarder::Forwarder(Direction direction, std::uint32_t max_message)
    : direction_(direction), max_message_(max_message) {}

int Forwarder::classify(char type) const {
  if (direction_ == Direction::FromClient) {
    switch (type) {
      case 'Q':  // Query
      case 'P':  // Parse
      case 'B':  // Bind
      case 'E':  // Execute
      case 'D':  // Describe
      case 'C':  // Close
      case 'S':  // Sync
      case 'H':  // Flush
      case 'F':  // FunctionCall
      case 'd':  // CopyData
      case 'c':  // CopyDone
      case 'f':  // CopyFail
      case 'X':  // Terminate
        return 1;
      default:
        // 'p' after startup, startup packets, garbage: a client out of sync or probing.
        return -1;
    }
  }
  switch (type) {
    case 'Z':  // ReadyForQuery
      return 2;
    case '1':  // ParseComplete
    case '2':  // BindComplete
    case '3':  // CloseComplete
    case 'A':  // NotificationResponse
    case 'C':  // CommandComplete
    case 'D':  // DataRow
    case 'E':  // ErrorResponse
    case 'G':  // CopyInResponse
    case 'H':  // CopyOutResponse
    case 'I':  // EmptyQueryResponse
    case 'N':  // NoticeResponse
    case 'S':  // ParameterStatus
    case 'T':  // RowDescription
    case 'V':  // FunctionCallResponse
    case 'W':  // CopyBothResponse
    case 'c':  // CopyDone
    case 'd':  // CopyData
    case 'n':  // NoData
    case 's':  // PortalSuspended
    case 't':  // ParameterDescription
      return 1;
    default:
      // 'K' would hand the client the server's cancel key; 'R' and 'v' belong to startup.
      return -1;
  }
}

}  // namespace pgwarden::session
