// Rate limiting of repeated authentication failures per client address (SPEC section 3,
// listener keys `auth_failure_limit` and `auth_failure_window`). The session asks blocked()
// when authentication starts and refuses a blocked address without running any auth method;
// it calls record_failure() after every failed authentication and record_success() after a
// successful one. It is touched only at those moments, never on the data path, so one mutex
// serialises every call and the class is safe to share between worker threads.
//
// Window: sliding, kept as kBuckets + 1 counters per address, each covering
// ceil(window / kBuckets). A failure is counted for at least `window` and at most
// `window + window / kBuckets` after it happened, so the granularity only ever errs towards
// blocking longer, never shorter. An address is blocked while at least `limit` failures are
// counted. Memory per address is constant whatever `limit` is (limit may be 1,000,000).
//
// Key: the IP address only, never the port (a client reconnecting from a new port is the same
// client). address_key() strips a port, canonicalises IPv6, and folds IPv4-mapped IPv6
// (::ffff:a.b.c.d, as a dual-stack listener reports IPv4 clients) onto the IPv4 address, so
// one host has one key however the caller spelled it.
//
// Memory bound: at most `max_tracked` addresses. Entries whose failures have all expired are
// purged as a side effect of every record_failure(). When the table is still full, one entry
// is evicted to make room, in this order of preference:
//   1. the least recently failed address that was not blocked at its most recent failure
//      (evicting it forgives at most limit - 1 failures);
//   2. only when every tracked address is blocked, the least recently failed blocked one.
// Trade-off: an attacker who sprays addresses cannot grow memory, and to push a blocked
// address out it must first get every other tracked address blocked more recently, i.e.
// cause about limit * max_tracked failures (1,000,000 with the defaults) from as many
// distinct addresses. We prefer that to the alternatives: refusing to track new addresses would let
// a sprayer disable the limiter for everyone new (fail open), and treating untracked
// addresses as blocked would let it lock everyone out. Lookups use an ordered map, so
// addresses chosen to collide cannot degrade it (no hash flooding).
//
// record_success() forgets the address, except while it is blocked: a success on a
// connection that started before the block was reached must not lift the block. Note that
// this lets a client holding valid credentials of its own reset its count between guesses at
// other users' passwords; callers that care should not call record_success() for such
// methods.
//
// limit == 0 disables the limiter: blocked() is always false and failures are not tracked.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace pgwarden::identity {

// The key under which failures from `address` are counted: "a.b.c.d" or the RFC 5952 form
// of an IPv6 address. Accepts "ip", "ip:port", "[v6]" and "[v6]:port". Anything that is not
// an IP literal is returned unchanged (callers always pass a socket's peer address).
std::string address_key(std::string_view address);

class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Sliding-window granularity: the window is split into this many buckets.
  static constexpr std::size_t kBuckets = 8;
  static constexpr std::size_t kDefaultMaxTracked = 100'000;

  FailureLimiter(std::uint32_t limit, Clock::duration window,
                 std::size_t max_tracked = kDefaultMaxTracked);
  FailureLimiter(const FailureLimiter&) = delete;
  FailureLimiter& operator=(const FailureLimiter&) = delete;

  // True when `address` has at least `limit` failures counted in the window ending at `now`.
  bool blocked(std::string_view address, Clock::time_point now = Clock::now());
  void record_failure(std::string_view address, Clock::time_point now = Clock::now());
  // Forgets the address, unless it was blocked when last checked (by blocked() or
  // record_failure()).
  void record_success(std::string_view address);
  // On reload. Counts are kept. When the window changes, the counted failures of an address
  // are re-bucketed as if they had all happened at its most recent failure: conservative
  // (a block can only get longer, by at most one new window).
  void reconfigure(std::uint32_t limit, Clock::duration window);

  // Number of addresses currently tracked (for tests and metrics).
  std::size_t tracked() const;

 private:
  using Slot = std::int64_t;
  // Ring of per-bucket counts; counts_[s % size] is the bucket of slot s, for the slots
  // head - kBuckets .. head.
  static constexpr std::size_t kRing = kBuckets + 1;

  struct Entry {
    std::array<std::uint32_t, kRing> counts{};
    Slot head = 0;                 // newest slot the ring covers
    Slot newest = 0;               // slot of the most recent failure; all counts expire with it
    bool in_blocked_list = false;  // blocked as of its most recent failure
    std::list<std::string_view>::iterator lru;
  };
  using Map = std::map<std::string, Entry, std::less<>>;

  bool enabled() const { return limit_ != 0 && window_ > Clock::duration::zero(); }
  Slot slot_of(Clock::time_point t) const;
  // Moves the ring forward to the slot of `now`, dropping buckets that left the window.
  void advance(Entry& e, Clock::time_point now) const;
  static std::uint64_t total(const Entry& e);
  bool expired(const Entry& e, Clock::time_point now) const;
  std::list<std::string_view>& list_of(const Entry& e) {
    return e.in_blocked_list ? blocked_lru_ : unblocked_lru_;
  }
  // Puts the entry at the most recent end of the list matching its current count.
  void requeue(Map::iterator it);
  void erase(Map::iterator it);
  void purge_expired(Clock::time_point now);
  void evict_one();

  mutable std::mutex mutex_;
  std::uint32_t limit_;
  Clock::duration window_;
  Clock::duration bucket_;
  std::size_t max_tracked_;
  Map entries_;
  // Least recently failed first. The string_views point at the keys of entries_ (map nodes
  // are stable), so each key is stored once.
  std::list<std::string_view> unblocked_lru_;
  std::list<std::string_view> blocked_lru_;
};

}  // namespace pgwarden::identity
