// The cancel registry: every established session gets its own cancel secret for the client
// (never the server's), and this registry maps the client's key back to the upstream key and
// the backend the session is connected to, so a CancelRequest arriving on any connection of
// any worker can be forwarded to the right server (SPEC section 6).
//
// Keys (issue 10, C1): the process id the client sees is the upstream server's real one, so
// `pg_terminate_backend(PQbackendPID(conn))`, NOTIFY's be_pid and pg_stat_activity.pid all
// mean what clients expect. Only the secret is pgwarden's: random, 4 bytes in protocol 3.0,
// 32 in 3.2. The server's secret never reaches the client.
//
// Several instances ([cluster] peers): the first byte of the secret names the owning
// instance, so any instance can hand a request to its owner (owner_of()). Without peers every
// byte is random. Entropy a guesser faces, per session key:
//   - protocol 3.2: 31 or 32 random bytes: guessing is out of the question;
//   - protocol 3.0 without peers: 32 random bits; with peers: 24 random bits.
// The process id is no secret (any client of the same server may see it in
// pg_stat_activity). With the per-address rate limit on CancelRequests (rate_limiter.h: 20
// per second after a burst of 50), the expected time to hit one session's 24-bit secret
// from one address is 2^23 / 20 s, about 4.9 days of continuous flooding, while the session
// must stay open and the attacker must know its PID; the attack also cannot be confirmed
// (no answer either way). 32 bits make it about 3.4 years. Clients that can, should use
// protocol 3.2.
//
// Several sessions can share an upstream PID (two servers reuse PIDs), so entries are keyed
// by PID and told apart by their secrets. Lookup compares secrets in constant time and never
// says which part did not match; a non-matching request is simply not found (the caller
// drops it silently, as PostgreSQL does). Thread-safe: a mutex, touched at session start/end
// and per cancel, never on the data path. Secrets are wiped when an entry is removed.
//
// Transaction pooling (later) breaks the 1:1 between a client and a server process; the
// plan there is a synthetic PID per client again, documented as such, with the cancel
// routed to whichever server process runs that client's transaction at the time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "config/values.h"
#include "wire/bytes.h"

namespace pgwarden::session {

// Where to send a forwarded cancel: the backend's address and TLS settings, opaque here.
struct CancelTarget {
  std::uint32_t upstream_pid = 0;
  std::vector<std::byte> upstream_secret;
  std::shared_ptr<const void> backend;  // the server layer's upstream description
};

struct ClientKey {
  std::uint32_t pid = 0;  // the upstream's own PID
  std::vector<std::byte> secret;
  std::uint64_t handle = 0;  // which registry entry: for remove()
};

class CancelRegistry {
 public:
  // `route_in_secret`: the first secret byte carries `instance_id` (a cluster with peers).
  CancelRegistry(std::uint8_t instance_id, bool route_in_secret)
      : instance_id_(instance_id), route_in_secret_(route_in_secret) {}
  ~CancelRegistry();
  CancelRegistry(const CancelRegistry&) = delete;
  CancelRegistry& operator=(const CancelRegistry&) = delete;

  // Issues a fresh client key for `target` (its upstream_pid and secret_length bytes of
  // secret). nullopt only if the random generator fails or secret_length is 0 (fail closed:
  // the caller refuses the session).
  std::optional<ClientKey> add(CancelTarget target, std::size_t secret_length);
  void remove(const ClientKey& key);
  // The target of a matching (pid, secret), or nullopt.
  std::optional<CancelTarget> find(std::uint32_t pid, wire::Bytes secret) const;

  std::uint8_t instance_id() const { return instance_id_; }
  // The instance that issued `secret`: this one unless secrets carry routing.
  std::uint8_t owner_of(wire::Bytes secret) const {
    return route_in_secret_ && !secret.empty() ? std::to_integer<std::uint8_t>(secret[0])
                                               : instance_id_;
  }
  std::size_t size() const;

 private:
  struct Entry {
    std::uint64_t handle = 0;
    std::vector<std::byte> secret;
    CancelTarget target;
  };
  std::uint8_t instance_id_;
  bool route_in_secret_;
  mutable std::mutex mutex_;
  std::multimap<std::uint32_t, Entry> entries_;
  std::uint64_t next_handle_ = 1;
};

void wipe(std::vector<std::byte>& secret);

}  // namespace pgwarden::session
