// Type bytes of protocol 3.x typed messages, per direction. Several bytes mean different
// messages in each direction ('D' is Describe from the frontend and DataRow from the
// backend), so the direction is always part of the type.
#pragma once

#include <cstdint>

namespace pgwarden::wire {

enum class FrontendType : char {
  Bind = 'B',
  Close = 'C',
  CopyData = 'd',
  CopyDone = 'c',
  CopyFail = 'f',
  Describe = 'D',
  Execute = 'E',
  Flush = 'H',
  FunctionCall = 'F',
  Parse = 'P',
  // 'p' carries PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse; which
  // one is known only from the authentication request that preceded it.
  AuthResponse = 'p',
  Query = 'Q',
  Sync = 'S',
  Terminate = 'X',
};

enum class BackendType : char {
  Authentication = 'R',
  BackendKeyData = 'K',
  BindComplete = '2',
  CloseComplete = '3',
  CommandComplete = 'C',
  CopyData = 'd',
  CopyDone = 'c',
  CopyInResponse = 'G',
  CopyOutResponse = 'H',
  CopyBothResponse = 'W',
  DataRow = 'D',
  EmptyQueryResponse = 'I',
  ErrorResponse = 'E',
  FunctionCallResponse = 'V',
  NegotiateProtocolVersion = 'v',
  NoData = 'n',
  NoticeResponse = 'N',
  NotificationResponse = 'A',
  ParameterDescription = 't',
  ParameterStatus = 'S',
  ParseComplete = '1',
  PortalSuspended = 's',
  ReadyForQuery = 'Z',
  RowDescription = 'T',
};

// Startup-phase request codes (the int32 after the length of an untyped packet).
inline constexpr std::uint32_t kProtocol30 = 196608;           // 3 << 16
inline constexpr std::uint32_t kProtocol32 = (3u << 16) | 2u;  // 3.2, PostgreSQL 18
inline constexpr std::uint32_t kCancelRequestCode = 80877102;  // 1234 << 16 | 5678
inline constexpr std::uint32_t kSslRequestCode = 80877103;     // 1234 << 16 | 5679
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;  // 1234 << 16 | 5680

// Authentication request subtypes (the int32 that opens an 'R' message).
enum class AuthType : std::int32_t {
  Ok = 0,
  KerberosV5 = 2,
  CleartextPassword = 3,
  MD5Password = 5,
  GSS = 7,
  GSSContinue = 8,
  SSPI = 9,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
};

}  // namespace pgwarden::wire
