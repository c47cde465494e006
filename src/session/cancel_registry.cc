#include "session/cancel_registry.h"

#include <openssl/crypto.h>

#include <array>
#include <cstring>

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
  ClientKey key;
  key.secret.resize(secret_length);
  if (!crypto::random_bytes(key.secret)) {
    return std::nullopt;
  }
  std::lock_guard lock(mutex_);
  // 24 random bits per instance; retry on collision (the table is far from full in practice,
  // but bound the loop so a full table cannot spin forever).
  for (int attempt = 0; attempt < 64; ++attempt) {
    std::array<std::byte, 3> r{};
    if (!crypto::random_bytes(r)) {
      return std::nullopt;
    }
    const std::uint32_t pid =
        (std::uint32_t{instance_id_} << 24) | (std::to_integer<std::uint32_t>(r[0]) << 16) |
        (std::to_integer<std::uint32_t>(r[1]) << 8) | std::to_integer<std::uint32_t>(r[2]);
    if (pid == 0 || entries_.contains(pid)) {
      continue;
    }
    key.pid = pid;
    entries_.emplace(pid, Entry{key.secret, std::move(target)});
    return key;
  }
  wipe(key.secret);
  return std::nullopt;
}

void CancelRegistry::remove(std::uint32_t pid) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pid);
  if (it == entries_.end()) {
    return;
  }
  wipe(it->second.secret);
  wipe(it->second.target.upstream_secret);
  entries_.erase(it);
}

std::optional<CancelTarget> CancelRegistry::find(std::uint32_t pid, wire::Bytes secret) const {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(pid);
  if (it == entries_.end()) {
    return std::nullopt;
  }
  const auto& expected = it->second.secret;
  // The length is not secret (it follows from the protocol version); the bytes are.
  if (expected.size() != secret.size() ||
      CRYPTO_memcmp(expected.data(), secret.data(), expected.size()) != 0) {
    return std::nullopt;
  }
  return it->second.target;
}

std::size_t CancelRegistry::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pgwarden::session
