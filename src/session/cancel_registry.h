// The cancel registry: every established session gets its own BackendKeyData for the client
// (never the server's), and this registry maps it back to the upstream key and the backend
// the session is connected to, so a CancelRequest arriving on any connection of any worker
// can be forwarded to the right server (SPEC section 6).
//
// Keys: the process id carries the owning instance in its top 8 bits ([cluster]
// instance_id) and 24 random bits below; the secret is random (4 bytes in protocol 3.0, 32
// in 3.2). A request whose process id names another instance is for a peer (owner_of()).
// Lookup compares the secret in constant time and never says which part did not match;
// a non-matching request is simply not found (the caller drops it silently, as PostgreSQL
// does). Thread-safe: a mutex, touched at session start/end and per cancel, never on the
// data path. Secrets are wiped when an entry is removed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
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
  std::uint32_t pid = 0;
  std::vector<std::byte> secret;
};

class CancelRegistry {
 public:
  explicit CancelRegistry(std::uint8_t instance_id) : instance_id_(instance_id) {}
  ~CancelRegistry();
  CancelRegistry(const CancelRegistry&) = delete;
  CancelRegistry& operator=(const CancelRegistry&) = delete;

  // Issues a fresh client key (secret_length bytes of secret) bound to `target`. nullopt only
  // if the random generator fails (fail closed: the caller refuses the session).
  std::optional<ClientKey> add(CancelTarget target, std::size_t secret_length);
  void remove(std::uint32_t pid);
  // The target of a matching (pid, secret), or nullopt.
  std::optional<CancelTarget> find(std::uint32_t pid, wire::Bytes secret) const;

  std::uint8_t instance_id() const { return instance_id_; }
  static std::uint8_t owner_of(std::uint32_t pid) { return static_cast<std::uint8_t>(pid >> 24); }
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::byte> secret;
    CancelTarget target;
  };
  std::uint8_t instance_id_;
  mutable std::mutex mutex_;
  std::unordered_map<std::uint32_t, Entry> entries_;
};

void wipe(std::vector<std::byte>& secret);

}  // namespace pgwarden::session
