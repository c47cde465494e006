#include "identity/failure_limiter.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace pgwarden::identity {
namespace {

std::string ipv4_text(const unsigned char* bytes) {
  char buf[INET_ADDRSTRLEN];
  if (inet_ntop(AF_INET, bytes, buf, sizeof buf) == nullptr) {
    return {};
  }
  return buf;
}

// Canonical text of an IP literal, or empty when `text` is not one. IPv4-mapped IPv6
// addresses become plain IPv4 so a dual-stack listener and an IPv4 one agree on the key.
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
    char out[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, bytes, out, sizeof out) == nullptr) {
      return {};
    }
    return out;
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

FailureLimiter::Slot FailureLimiter::slot_of(Clock::time_point t) const {
  return floor_div(t.time_since_epoch().count(), bucket_.count());
}

void FailureLimiter::advance(Entry& e, Clock::time_point now) const {
  const Slot s = slot_of(now);
  if (s <= e.head) {
    // Same bucket, or a clock that stepped back: count in the newest bucket we have.
    return;
  }
  if (s - e.head >= static_cast<Slot>(kRing)) {
    e.counts.fill(0);
  } else {
    for (Slot k = e.head + 1; k <= s; ++k) {
      e.counts[ring_index(k, kRing)] = 0;
    }
  }
  e.head = s;
}

std::uint64_t FailureLimiter::total(const Entry& e) {
  std::uint64_t sum = 0;
  for (const std::uint32_t c : e.counts) {
    sum += c;
  }
  return sum;
}

bool FailureLimiter::expired(const Entry& e, Clock::time_point now) const {
  // The newest failure left the ring, so every older one did too.
  return slot_of(now) - e.newest >= static_cast<Slot>(kRing);
}

void FailureLimiter::requeue(Map::iterator it) {
  Entry& e = it->second;
  list_of(e).erase(e.lru);
  e.in_blocked_list = enabled() && total(e) >= limit_;
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

bool FailureLimiter::blocked(std::string_view address, Clock::time_point now) {
  const std::string key = address_key(address);
  const std::lock_guard lock(mutex_);
  if (!enabled()) {
    return false;
  }
  const auto it = entries_.find(key);
  if (it == entries_.end()) {
    return false;
  }
  if (expired(it->second, now)) {
    erase(it);
    return false;
  }
  advance(it->second, now);
  return total(it->second) >= limit_;
}

void FailureLimiter::record_failure(std::string_view address, Clock::time_point now) {
  const std::string key = address_key(address);
  const std::lock_guard lock(mutex_);
  if (!enabled()) {
    return;
  }
  purge_expired(now);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_tracked_) {
      evict_one();
    }
    it = entries_.emplace(key, Entry{}).first;
    Entry& e = it->second;
    e.head = slot_of(now);
    e.in_blocked_list = false;
    e.lru = unblocked_lru_.insert(unblocked_lru_.end(), std::string_view(it->first));
  } else {
    advance(it->second, now);
  }
  Entry& e = it->second;
  auto& bucket = e.counts[ring_index(e.head, kRing)];
  if (bucket != std::numeric_limits<std::uint32_t>::max()) {
    ++bucket;
  }
  e.newest = e.head;
  requeue(it);
}

void FailureLimiter::record_success(std::string_view address) {
  const std::string key = address_key(address);
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(key);
  if (it == entries_.end()) {
    return;
  }
  // A block in force is not lifted by a success on a connection that started before it.
  if (enabled() && total(it->second) >= limit_) {
    return;
  }
  erase(it);
}

void FailureLimiter::reconfigure(std::uint32_t limit, Clock::duration window) {
  const std::lock_guard lock(mutex_);
  const Clock::duration old_bucket = bucket_;
  limit_ = limit;
  window_ = window;
  bucket_ = bucket_for(window_);
  if (bucket_ != old_bucket) {
    // Re-bucket: every counted failure moves to the end of its entry's newest old slot, so
    // nothing is forgotten early.
    for (auto& [key, e] : entries_) {
      const std::uint64_t sum = total(e);
      const Clock::time_point end_of_newest(old_bucket * (e.newest + 1) - Clock::duration(1));
      e.counts.fill(0);
      e.head = slot_of(end_of_newest);
      e.newest = e.head;
      e.counts[ring_index(e.head, kRing)] = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(sum, std::numeric_limits<std::uint32_t>::max()));
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
    e.in_blocked_list = enabled() && total(e) >= limit_;
    auto& list = list_of(e);
    e.lru = list.insert(list.end(), std::string_view(it->first));
  }
}

std::size_t FailureLimiter::tracked() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace pgwarden::identity
