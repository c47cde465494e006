#include "session/cancel_registry.h"

#include <openssl/crypto.h>

#include "crypto/random.h"

namespace pgwarden::session {

void wipe(std::vector<std::byte>& secret) {
  if (!secret.empty()) {
    OPENSSL_cleanse(secret.data(), secret.size());
  }
  secret.clear();
}

CancelRegistry::~CancelRegistry() {
  for (auto& [pid, entry] : entries_) {
    wipe(entry.secret);
    wipe(entry.target.upstream_secret);
  }
}

std::optional<ClientKey> CancelRegistry::add(CancelTarget target, std::size_t secret_length) {
  if (secret_length == 0) {
    return std::nullopt;
  }
  ClientKey key;
  key.pid = target.upstream_pid;
  key.secret.resize(secret_length);
  if (!crypto::random_bytes(key.secret)) {
    wipe(key.secret);
    return std::nullopt;
  }
  if (route_in_secret_) {
    key.secret[0] = std::byte{instance_id_};
  }
  std::lock_guard lock(mutex_);
  // A repeated (pid, secret) would make two sessions answer to one key: draw again (with
  // 32 random bits and a handful of sessions per PID this practically never happens).
  for (int attempt = 0; attempt < 64; ++attempt) {
    bool taken = false;
    auto [lo, hi] = entries_.equal_range(key.pid);
    for (auto it = lo; it != hi; ++it) {
      taken = taken || it->second.secret == key.secret;
    }
    if (!taken) {
      key.handle = next_handle_++;
      entries_.emplace(key.pid, Entry{key.handle, key.secret, std::move(target)});
      return key;
    }
    if (!crypto::random_bytes(std::span(key.secret).subspan(route_in_secret_ ? 1 : 0))) {
      break;
    }
  }
  wipe(key.secret);
  return std::nullopt;
}

void CancelRegistry::remove(const ClientKey& key) {
  std::lock_guard lock(mutex_);
  auto [lo, hi] = entries_.equal_range(key.pid);
  for (auto it = lo; it != hi; ++it) {
    if (it->second.handle == key.handle) {
      wipe(it->second.secret);
      wipe(it->second.target.upstream_secret);
      entries_.erase(it);
      return;
    }
  }
}

std::optional<CancelTarget> CancelRegistry::find(std::uint32_t pid, wire::Bytes secret) const {
  std::lock_guard lock(mutex_);
  std::optional<CancelTarget> found;
  auto [lo, hi] = entries_.equal_range(pid);
  for (auto it = lo; it != hi; ++it) {
    const auto& expected = it->second.secret;
    // The length is not secret (it follows from the protocol version); the bytes are, and
    // every candidate is compared in full, whatever the outcome of the others.
    if (expected.size() == secret.size() &&
        CRYPTO_memcmp(expected.data(), secret.data(), expected.size()) == 0) {
      found = it->second.target;
    }
  }
  return found;
}

std::size_t CancelRegistry::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pgwarden::session
