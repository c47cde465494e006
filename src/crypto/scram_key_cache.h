// ClientKey and ServerKey of one password, per salt and iteration count.
//
// A SCRAM login costs the client one PBKDF2 run (Hi(), 4096 HMAC-SHA-256 iterations with
// PostgreSQL's default), which dominates the CPU of a new upstream session. With static
// credentials pgwarden logs in with the same password again and again, and the server sends
// the same salt and iteration count each time until the role's password is changed. The keys
// derived from them can therefore be reused (RFC 5802, section 5.1, allows a client to cache
// ClientKey and ServerKey), which removes PBKDF2 from every login after the first.
//
// The keys are as good as the password for logging in to that server, so they live only in
// memory, are wiped on eviction and destruction, and a cache belongs to one password: the
// owner makes a new cache when the password changes (a new config generation). Entries are
// few (a server keeps one verifier per role); the oldest is evicted beyond kMaxEntries, so a
// server that sends a new salt each time cannot make the cache grow.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "crypto/scram.h"

namespace pgwarden::crypto {

class ScramKeyCache {
 public:
  static constexpr std::size_t kMaxEntries = 8;

  struct Keys {
    ScramKey client_key{};
    ScramKey server_key{};
  };

  ScramKeyCache() = default;
  ScramKeyCache(const ScramKeyCache&) = delete;
  ScramKeyCache& operator=(const ScramKeyCache&) = delete;
  ~ScramKeyCache();

  // Copies the keys stored for (salt, iterations) into `out`; false if there are none. Safe to
  // call from any thread.
  bool find(std::span<const std::byte> salt, std::uint32_t iterations, Keys& out) const;
  // Stores (or replaces) the keys for (salt, iterations).
  void store(std::span<const std::byte> salt, std::uint32_t iterations, const Keys& keys);
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::byte> salt;
    std::uint32_t iterations = 0;
    Keys keys;
  };
  static void wipe_entry(Entry& e);

  // A fixed ring, so keys never move between allocations (a moved-from buffer would be freed
  // unwiped); `next_` is the slot the next new entry overwrites.
  mutable std::mutex mutex_;
  std::array<Entry, kMaxEntries> entries_;
  std::size_t used_ = 0;
  std::size_t next_ = 0;
};

}  // namespace pgwarden::crypto
