// Builders for the session-level audit events of SPEC section 7: session_start,
// auth_failure, session_denied and session_end. Each returns a JSON object ready for
// AuditLog::write().
//
// Every event has the common fields
//   ts            RFC 3339 UTC with microseconds, "2026-11-21T11:00:38.123456Z"
//   event         the event name
//   session       the session id as 16 lower-case hex digits (format_session_id)
//   listener      the listener name
//   client        "ip:port" ("[v6]:port" for IPv6)
//   tls           {version, cipher, sni, client_subject} or null for a plaintext session;
//                 sni and client_subject are null when the client sent none
//   identity      {name, method, groups, <attributes>...} or null before authentication;
//                 attributes are merged into the object but can never replace name, method
//                 or groups (an attribute may carry a certificate or token value)
//   database, backend, backend_user   strings, null while not yet known (empty)
// and then:
//   session_start   upstream_auth (how pgwarden authenticated upstream, e.g.
//                   "SCRAM-SHA-256-PLUS")
//   auth_failure    user (the startup user the client asked for), method, reason
//   session_denied  sqlstate, reason
//   session_end     duration_us, bytes_in, bytes_out, statements, reason
//
// No secret can reach an event: none of these inputs is a password, token, key, proof or
// cancel secret, and callers must not put one in `reason`. Strings are stored as given;
// AuditLog replaces invalid UTF-8 when it serialises the line.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "identity/identity.h"

namespace pgwarden::audit {

struct TlsFacts {
  std::string version;                        // "TLSv1.3"
  std::string cipher;                         // "TLS_AES_256_GCM_SHA384"
  std::string sni;                            // empty: no SNI
  std::optional<std::string> client_subject;  // verified client certificate subject
};

struct SessionFacts {
  std::uint64_t session_id = 0;  // rendered by format_session_id in `session`
  std::string listener;
  std::string client;                          // "ip:port" ("[v6]:port" for IPv6)
  std::optional<TlsFacts> tls;                 // absent: JSON null
  std::optional<identity::Identity> identity;  // absent before authentication
  std::string database, backend, backend_user;
  std::string user;  // the startup user the client asked for
};

struct SessionTotals {
  std::chrono::microseconds duration{0};
  std::uint64_t bytes_in = 0;   // from the client
  std::uint64_t bytes_out = 0;  // to the client
  std::uint64_t statements = 0;
  std::string reason;  // why the session ended, e.g. "client terminated"
};

nlohmann::json session_start(const SessionFacts& facts, std::string_view upstream_auth);
nlohmann::json auth_failure(const SessionFacts& facts, std::string_view method,
                            std::string_view reason);
nlohmann::json session_denied(const SessionFacts& facts, std::string_view sqlstate,
                              std::string_view reason);
nlohmann::json session_end(const SessionFacts& facts, const SessionTotals& totals);

// The session id as it appears in audit events, logs and the admin console: 16 lower-case
// hex digits.
std::string format_session_id(std::uint64_t id);

// RFC 3339 in UTC with exactly six fractional digits: "2026-11-21T11:00:38.123456Z".
std::string rfc3339_us(std::chrono::system_clock::time_point t);
std::string rfc3339_now_us();

}  // namespace pgwarden::audit
