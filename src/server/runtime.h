// Process-wide state shared by every worker, and the immutable "generation" a reload swaps.
//
// A Generation bundles one validated Config with everything derived from it that sessions
// use: the TLS contexts of each listener and backend. Sessions take a shared_ptr to the
// generation current when they were accepted and keep it until they end, so a reload never
// changes the ground under a live session (its certificates, its backend) and never drops
// it. State that must outlive reloads lives in Runtime: per-listener connection counters
// and failure limiters, the cancel registry, the audit log, the session-id source.
//
// Threading: generation(), audit() and the listener map are read from every worker under a
// mutex (only at session start/end and on rare events); counters are atomics; the cancel
// registry and the failure limiters lock internally. Nothing here is touched per message.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "audit/audit_log.h"
#include "config/config.h"
#include "crypto/scram_key_cache.h"
#include "identity/failure_limiter.h"
#include "session/cancel_registry.h"
#include "session/rate_limiter.h"
#include "tls/server_tls.h"
#include "tls/upstream_tls.h"

namespace pgwarden::server {

struct ListenerTls {
  std::shared_ptr<const tls::ServerTls> tls;
};

// One backend as sessions (and forwarded cancels) connect to it.
struct BackendRuntime {
  std::shared_ptr<const config::Config> config;  // keeps `backend` alive
  const config::Backend* backend = nullptr;
  std::shared_ptr<const tls::UpstreamTls> tls;  // null when tls = "disable"
  // SCRAM keys of the static password, by the server's salt: PBKDF2 once per generation, not
  // once per session. Passthrough logins never use it (each client has its own password).
  mutable crypto::ScramKeyCache scram_keys;
};

struct Generation {
  std::shared_ptr<const config::Config> config;
  std::map<std::string, ListenerTls, std::less<>>
      listener_tls;  // by listener name; absent: disable
  std::map<std::string, std::shared_ptr<const BackendRuntime>, std::less<>> backends;

  const config::Listener* find_listener(std::string_view name) const;
};

// Builds a generation: creates every TLS context. Errors name the listener/backend.
std::expected<std::shared_ptr<const Generation>, std::string> make_generation(
    std::shared_ptr<const config::Config> config);

struct ListenerState {
  explicit ListenerState(const config::Listener& l)
      : limiter(l.auth_failure_limit, l.auth_failure_window) {}
  std::atomic<std::uint32_t> connections{0};
  identity::FailureLimiter limiter;
};

class Runtime {
 public:
  Runtime(std::shared_ptr<const Generation> generation, std::unique_ptr<audit::AuditLog> audit);

  std::shared_ptr<const Generation> generation() const;
  void set_generation(std::shared_ptr<const Generation> g);

  // Writes one audit event (no-op without an audit log).
  void audit(const nlohmann::json& event);
  // Reopens the audit log (rotation), or opens the one a reloaded config names.
  void reopen_audit(const config::AuditConfig& audit_config);

  ListenerState& listener_state(const std::string& name) { return *listeners_.at(name); }
  session::CancelRegistry& cancels() { return cancels_; }
  // CancelRequests per client address (they need no login: see rate_limiter.h).
  session::RequestRateLimiter& cancel_limiter() { return cancel_limiter_; }
  std::uint64_t new_session_id();

  std::atomic<bool> draining{false};  // set once by SIGTERM/SIGINT, read by new sessions
  std::atomic<std::uint64_t> live_sessions{0};
  // Sessions that ended with an exception (logged each time; a bug to look into).
  std::atomic<std::uint64_t> session_exceptions{0};

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Generation> generation_;
  std::shared_ptr<audit::AuditLog> audit_;
  std::map<std::string, std::unique_ptr<ListenerState>> listeners_;
  session::CancelRegistry cancels_;
  session::RequestRateLimiter cancel_limiter_{session::kCancelRequestsPerSecond,
                                              session::kCancelRequestBurst};
  std::atomic<std::uint64_t> fallback_id_{0};
};

}  // namespace pgwarden::server
