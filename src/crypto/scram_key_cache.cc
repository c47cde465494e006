#include "crypto/scram_key_cache.h"

#include <algorithm>

#include "crypto/secret.h"

namespace pgwarden::crypto {

namespace {
bool same_salt(std::span<const std::byte> a, std::span<const std::byte> b) {
  return std::ranges::equal(a, b);  // the salt is public: no constant-time need
}
}  // namespace

ScramKeyCache::~ScramKeyCache() {
  for (auto& e : entries_) {
    wipe_entry(e);
  }
}

void ScramKeyCache::wipe_entry(Entry& e) {
  wipe(e.keys.client_key);
  wipe(e.keys.server_key);
}

bool ScramKeyCache::find(std::span<const std::byte> salt, std::uint32_t iterations,
                         Keys& out) const {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < used_; ++i) {
    const Entry& e = entries_[i];
    if (e.iterations == iterations && same_salt(e.salt, salt)) {
      out = e.keys;
      return true;
    }
  }
  return false;
}

void ScramKeyCache::store(std::span<const std::byte> salt, std::uint32_t iterations,
                          const Keys& keys) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < used_; ++i) {
    Entry& e = entries_[i];
    if (e.iterations == iterations && same_salt(e.salt, salt)) {
      e.keys = keys;
      return;
    }
  }
  Entry& slot = entries_[next_];
  wipe_entry(slot);
  slot.salt.assign(salt.begin(), salt.end());
  slot.iterations = iterations;
  slot.keys = keys;
  next_ = (next_ + 1) % kMaxEntries;
  used_ = std::min(used_ + 1, kMaxEntries);
}

std::size_t ScramKeyCache::size() const {
  std::lock_guard lock(mutex_);
  return used_;
}

}  // namespace pgwarden::crypto
