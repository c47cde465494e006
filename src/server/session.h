// One client connection, from its first byte to its close, owned by one coroutine on one
// worker thread (SPEC sections 1-4 and 6).
//
// Phases:
//  1. Negotiation: SSLRequest / direct TLS (ALPN "postgresql") / GSSENCRequest ('N') /
//     CancelRequest / StartupMessage, each packet framed with the listener's limits. Bytes
//     that arrive after SSLRequest but before the handshake are refused.
//  2. Admission: TLS and client-certificate requirements, max_connections, the failure
//     limiter, startup parameters.
//  3. Identity: the first method of the listener's `auth` list that applies.
//  4. Upstream: connect (connect_timeout), TLS per backend (verify-full by default, never a
//     silent downgrade), StartupMessage with the credentials the mode dictates, and the
//     upstream authentication, all before the client sees AuthenticationOk. Any failure is
//     FATAL 08006 naming the step.
//  5. Forwarding: two pumps (client->server, server->client) pass bytes through unchanged,
//     framed by session::Forwarder; the client's BackendKeyData carries the server's real
//     process id and a cancel secret of pgwarden's own (session/cancel_registry.h).
// Phases 1-4 are bounded by the listener's startup_timeout. A refusal always sends an
// ErrorResponse with the specified SQLSTATE before closing.
//
// Drain and kill come from the worker thread that owns the session: drain() ends the session
// at its next idle point (at once when idle), kill() ends it now; both send FATAL.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>

#include "audit/events.h"
#include "identity/identity.h"
#include "server/runtime.h"
#include "server/stream.h"
#include "session/startup_params.h"
#include "wire/framer.h"

namespace pgwarden::server {

class Session;

// The sessions of one worker, touched only on that worker's thread.
class SessionSet {
 public:
  void add(Session* s) { sessions_.insert(s); }
  void remove(Session* s) { sessions_.erase(s); }
  template <typename Fn>
  void for_each(Fn&& fn) {
    // Copy: fn may end sessions, which removes them.
    std::vector<Session*> copy(sessions_.begin(), sessions_.end());
    for (Session* s : copy) {
      if (sessions_.contains(s)) {
        fn(*s);
      }
    }
  }

 private:
  std::unordered_set<Session*> sessions_;
};

// Runs a session to its end. The socket is accepted on `listener`.
awaitable<void> run_session(Runtime& runtime, SessionSet& set, tcp::socket socket,
                            std::string listener);

// Ends `s` at its next idle point (SIGTERM drain), or now with FATAL `sqlstate`.
void drain_session(Session& s);
void kill_session(Session& s, std::string_view sqlstate, std::string message);
// Closes both connections now, even in the middle of a write (a client that stopped reading).
void abort_session(Session& s);

// Forwards a CancelRequest to the upstream in `target` (used by sessions and for peers).
awaitable<void> forward_cancel(const session::CancelTarget& target);

}  // namespace pgwarden::server
