#include "identity/failure_limiter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "crypto/scram.h"

namespace pgwarden::identity {
namespace {

std::string ipv4_text(const unsigned char* bytes) {
  char buf[INET_ADDRSTRLEN];
  if (inet_ntop(AF_INET, bytes, buf, sizeof buf) == nullptr) {
    return {};
  }
  return buf;
}

// The limiter key of an IP literal, or empty when `text` is not one. IPv4-mapped IPv6
// addresses become plain IPv4 so a dual-stack listener and an IPv4 one agree on the key; other
// IPv6 addresses become their /64 prefix, the unit one host or customer usually holds.
std::string canonical_ip(std::string_view text) {
  // inet_pton needs a NUL-terminated string; an IP literal is short.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) {
    return {};
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  unsigned char bytes[16];
  if (inet_pton(AF_INET, buf, bytes) == 1) {
    return ipv4_text(bytes);
  }
  if (inet_pton(AF_INET6, buf, bytes) == 1) {
    static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(bytes, kMappedPrefix, sizeof kMappedPrefix) == 0) {
      return ipv4_text(bytes + 12);
    }
    std::memset(bytes + 8, 0, 8);  // keep the /64 prefix
    char out[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, bytes, out, sizeof out) == nullptr) {
      return {};
    }
    return std::string(out) + "/64";
  }
  return {};
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::ranges::all_of(s, [](char c) { return c >= '0' && c <= '9'; });
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) {
    --q;
  }
  return q;
}

std::size_t ring_index(std::int64_t slot, std::size_t ring) {
  const auto n = static_cast<std::int64_t>(ring);
  return static_cast<std::size_t>(((slot % n) + n) % n);
}

using Duration = FailureLimiter::Clock::duration;

// ceil(window / kBuckets), at least one tick.
Duration bucket_for(Duration window) {
  constexpr auto n = static_cast<Duration::rep>(FailureLimiter::kBuckets);
  return std::max(Duration(1), (window + Duration(n - 1)) / n);
}

}  // namespace

std::string address_key(std::string_view address) {
  std::string_view host = address;
  if (host.starts_with('[')) {
    // "[v6]" or "[v6]:port"
    const auto close = host.find(']');
    if (close != std::string_view::npos) {
      const std::string_view rest = host.substr(close + 1);
      if (rest.empty() || (rest.starts_with(':') && all_digits(rest.substr(1)))) {
        host = host.substr(1, close - 1);
      }
    }
  } else if (const auto colon = host.find(':');
             colon != std::string_view::npos &&
             host.find(':', colon + 1) == std::string_view::npos &&
             all_digits(host.substr(colon + 1))) {
    // Exactly one colon: "a.b.c.d:port" (an IPv6 literal has at least two).
    host = host.substr(0, colon);
  }
  std::string canonical = canonical_ip(host);
  if (canonical.empty()) {
    return std::string(address);
  }
  return canonical;
}

FailureLimiter::FailureLimiter(std::uint32_t limit, Clock::duration window, std::size_t max_tracked)
    : limit_(limit), window_(window), max_tracked_(std::max<std::size_t>(max_tracked, 1)) {
  bucket_ = bucket_for(window_);
}

std::optional<FailureLimiter::UserKey> FailureLimiter::user_key(std::string_view user) {
  static_assert(std::is_same_v<UserKey, crypto::ScramKey>);
  auto digest = crypto::sha256(std::as_bytes(std::span(user.data(), user.size())));
  if (!digest) {
    // The failure is still counted, just never forgiven: fail closed.
    return std::nullopt;
  }
  return *digest;
}

FailureLimiter::Slot FailureLimiter::slot_of(Clock::time_point t) const {
  return floor_div(t.time_since_epoch().count(), bucket_.count());
}

void FailureLimiter::advance(Entry& e, Clock::time_point now) const {
  const Slot s = slot_of(now);
  if (s <= e.head) {
    // Same bucket, or a clock that stepped back: count in the newest bucket we have.
    return;
  }
  auto drop_old = [&](Ring& r) {
    if (s - e.head >= static_cast<Slot>(kRing)) {
      r.fill(0);
    } else {
      for (Slot k = e.head + 1; k <= s; ++k) {
        r[ring_index(k, kRing)] = 0;
      }
    }
  };
  drop_old(e.counts);
  for (UserFailures& u : e.users) {
    drop_old(u.counts);
  }
  std::erase_if(e.users, [](const UserFailures& u) { return total(u.counts) == 0; });
  e.head = s;
}

std::uint64_t FailureLimiter::total(const Ring& r) {
  std::uint64_t sum = 0;
  for (const std::uint32_t c : r) {
    sum += c;
  }
  return sum;
}

bool FailureLimiter::expired(const Entry& e, Clock::time_point now) const {
  // The newest failure left the ring, so every older one did too.
  return slot_of(now) - e.newest >= static_cast<Slot>(kRing);
}

FailureLimiter::Map::iterator FailureLimiter::find_live(std::string_view key,
                                                        Clock::time_point now) {
  const auto it = entries_.find(key);
  if (it == entries_.end()) {
    return it;
  }
  if (expired(it->second, now)) {
    erase(it);
    return entries_.end();
  }
  advance(it->second, now);
  return it;
}

void FailureLimiter::count_failure(Map::iterator it, const std::optional<UserKey>& user) {
  Entry& e = it->second;
  const std::size_t b = ring_index(e.head, kRing);
  // record() counts only below the limit, so a bucket cannot be full; if one were, counting
  // nothing more for it is harmless since the address is blocked anyway.
  if (e.counts[b] != std::numeric_limits<std::uint32_t>::max()) {
    ++e.counts[b];
    ++e.stamp;
    if (user) {
      auto u = std::ranges::find(e.users, *user, &UserFailures::user);
      if (u == e.users.end()) {
        if (e.users.size() >= kMaxUsersPerAddress) {
          // Drop the attribution of the least recently failed user. Its failures stay in
          // e.counts, where no success can reach them any more: fail closed.
          u = std::ranges::min_element(e.users, {}, &UserFailures::last);
          *u = UserFailures{};
        } else {
          u = e.users.insert(e.users.end(), UserFailures{});
        }
        u->user = *user;
      }
      // Never above e.counts[b], which was just incremented and is not full.
      ++u->counts[b];
      u->last = e.stamp;
    }
  }
  e.newest = e.head;
  requeue(it);
}

void FailureLimiter::forgive(Map::iterator it, const std::optional<UserKey>& user) {
  if (!user) {
    return;
  }
  Entry& e = it->second;
  const auto u = std::ranges::find(e.users, *user, &UserFailures::user);
  if (u == e.users.end()) {
    return;
  }
  for (std::size_t b = 0; b < kRing; ++b) {
    e.counts[b] -= std::min(e.counts[b], u->counts[b]);
  }
  e.users.erase(u);
  if (total(e.counts) == 0) {
    erase(it);
  }
  // Otherwise the entry keeps its place in the eviction lists: they are ordered by most recent
  // failure, which has not changed. An entry still filed as blocked is only protected more.
}

void FailureLimiter::requeue(Map::iterator it) {
  Entry& e = it->second;
  list_of(e).erase(e.lru);
  e.in_blocked_list = enabled() && total(e.counts) >= limit_;
  auto& list = list_of(e);
  e.lru = list.insert(list.end(), std::string_view(it->first));
}

void FailureLimiter::erase(Map::iterator it) {
  list_of(it->second).erase(it->second.lru);
  entries_.erase(it);
}

void FailureLimiter::purge_expired(Clock::time_point now) {
  // Each list is in order of most recent failure, so the expired entries are a prefix.
  for (auto* list : {&unblocked_lru_, &blocked_lru_}) {
    while (!list->empty()) {
      const auto it = entries_.find(list->front());
      if (!expired(it->second, now)) {
        break;
      }
      erase(it);
    }
  }
}

void FailureLimiter::evict_one() {
  // An unblocked address first: losing it forgives fewer than `limit` failures. A blocked one
  // only when nothing else is left (see the header for the trade-off).
  auto& list = !unblocked_lru_.empty() ? unblocked_lru_ : blocked_lru_;
  if (list.empty()) {
    return;
  }
  erase(entries_.find(list.front()));
}

FailureLimiter::Verdict FailureLimiter::record(std::string_view address, std::string_view user,
                                               bool success, Clock::time_point now) {
  const std::string key = address_key(address);
  const std::optional<UserKey> who = user_key(user);
  const std::lock_guard lock(mutex_);
  if (!enabled()) {
    return success ? Verdict::Allowed : Verdict::Failed;
  }
  purge_expired(now);
  auto it = find_live(key, now);
  // Decided and counted under one lock: parallel handshakes cannot all slip under the limit.
  if (it != entries_.end() && total(it->second.counts) >= limit_) {
    return Verdict::Blocked;
  }
  if (success) {
    if (it != entries_.end()) {
      forgive(it, who);
    }
    return Verdict::Allowed;
  }
  if (it == entries_.end()) {
    if (entries_.size() >= max_tracked_) {
      evict_one();
    }
    it = entries_.emplace(key, Entry{}).first;
    Entry& e = it->second;
    e.head = slot_of(now);
    e.newest = e.head;
    e.in_blocked_list = false;
    e.lru = unblocked_lru_.insert(unblocked_lru_.end(), std::string_view(it->first));
  }
  count_failure(it, who);
  return Verdict::Failed;
}

bool FailureLimiter::blocked(std::string_view address, Clock::time_point now) {
  const std::string key = address_key(address);
  const std::lock_guard lock(mutex_);
  if (!enabled()) {
    return false;
  }
  const auto it = find_live(key, now);
  return it != entries_.end() && total(it->second.counts) >= limit_;
}

void FailureLimiter::reconfigure(std::uint32_t limit, Clock::duration window) {
  const std::lock_guard lock(mutex_);
  const Clock::duration old_bucket = bucket_;
  limit_ = limit;
  window_ = window;
  bucket_ = bucket_for(window_);
  if (bucket_ != old_bucket) {
    // Re-bucket: every counted failure (and its attribution) moves to the end of its entry's
    // newest old slot, so nothing is forgotten early and the per-bucket invariant between
    // users and address still holds.
    for (auto& [key, e] : entries_) {
      const Clock::time_point end_of_newest(old_bucket * (e.newest + 1) - Clock::duration(1));
      const Slot head = slot_of(end_of_newest);
      auto rebucket = [head](Ring& r) {
        const std::uint64_t sum = total(r);
        r.fill(0);
        r[ring_index(head, kRing)] = static_cast<std::uint32_t>(
            std::min<std::uint64_t>(sum, std::numeric_limits<std::uint32_t>::max()));
      };
      rebucket(e.counts);
      for (UserFailures& u : e.users) {
        rebucket(u.counts);
      }
      e.head = head;
      e.newest = head;
    }
  }
  // Blocked-ness depends on the limit: rebuild both eviction lists, oldest failure first.
  std::vector<Map::iterator> order;
  order.reserve(entries_.size());
  for (auto* list : {&unblocked_lru_, &blocked_lru_}) {
    for (const std::string_view k : *list) {
      order.push_back(entries_.find(k));
    }
  }
  std::ranges::stable_sort(order, {}, [](Map::iterator it) { return it->second.newest; });
  unblocked_lru_.clear();
  blocked_lru_.clear();
  for (const Map::iterator it : order) {
    Entry& e = it->second;
    e.in_blocked_list = enabled() && total(e.counts) >= limit_;
    auto& list = list_of(e);
    e.lru = list.insert(list.end(), std::string_view(it->first));
  }
}

std::size_t FailureLimiter::tracked() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pgwarden::identity
