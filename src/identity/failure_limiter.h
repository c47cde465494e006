// Rate limiting of failed authentications per client address (SPEC section 3, listener keys
// `auth_failure_limit` and `auth_failure_window`): at most `limit` password verdicts of
// "failed" per address per sliding window, and nothing a client does with credentials of its
// own can buy it more.
//
// Contract. The session calls record(address, user, success) at the moment a verdict is known
// and BEFORE it tells the client anything. Under one mutex, record() decides and counts:
//   - the address is blocked (counted failures of all its users >= limit): Blocked, whatever
//     `success` is, and nothing is counted. The caller refuses with "too many failed
//     authentication attempts" and must not reveal the verdict, not even a correct password;
//   - otherwise a failure is counted against (address, user): Failed;
//   - otherwise, a success: the failures counted against that same user at that address are
//     removed (never other users'): Allowed.
// blocked() is a cheap early check at admission that spares a blocked client the handshake;
// it is advisory, record() is the decision. The limiter is touched only at those moments,
// never on the data path, so one mutex serialises every call; it is safe to share between
// worker threads.
//
// Threats this answers (security review findings):
//   M1: a success used to clear the whole address. Four guesses at "victim", one good login as
//       "me", repeat: 40 guesses in 10 s against a limit of 5 per 30 s. A success now only
//       forgives the failures against its own user, so guesses at other users' passwords keep
//       counting whatever the client logs in as.
//   M2: the block used to be checked only before authentication, so 100 connections opened
//       at once all got a verdict. Because record() checks and counts atomically, however many
//       handshakes run in parallel at most `limit` of them get Failed per window; the others
//       get Blocked and learn nothing about their password.
// The user must be the account whose credentials the verdict is about (the startup-packet
// user for scram and passthrough). A method whose secret is not bound to the requested name
// (a bearer token) must not record a success under a name the client chose, or it reopens M1.
//
// Key: the client address, never the port. IPv4: the full address. IPv6: its /64 prefix,
// because one host or customer commonly holds a whole /64 and could otherwise rotate through
// 2^64 addresses, each with a fresh budget. IPv4-mapped IPv6 (::ffff:a.b.c.d, as a dual-stack
// listener reports IPv4 clients) folds onto the IPv4 address. See address_key().
// Trade-offs: hosts behind one NAT or in one /64 share one budget, so one of them can block
// the others for a window (we prefer that to failing open); a legitimate success by a user
// forgives the failures against that user from the same address, including guesses made by
// an attacker sharing the address, which is bounded by how often the real user logs in; an
// attacker holding a /48 still gets one budget per /64 (2^16 of them): per-address limits do
// not replace strong passwords. Attempts refused as Blocked are not counted: they tested no
// password, so a client hammering a blocked address is unblocked one window after its last
// counted failure, and gets `limit` more guesses then.
//
// Window: sliding, kept as kBuckets + 1 counters per address, each covering
// ceil(window / kBuckets). A failure is counted for at least `window` and at most
// `window + window / kBuckets` after it happened, so the granularity only ever errs towards
// blocking longer, never shorter.
//
// Per-user attribution: inside an address entry, each counted failure is also attributed to
// its user, in a ring of the same shape, so that a success can remove exactly that user's
// failures still in the window. Users are keyed by the SHA-256 of the name: fixed size
// whatever the client sends (a startup packet may carry a 10 kB name) and equal only for equal
// names, so no success can forgive a different name. At most kMaxUsersPerAddress users are
// attributed per address; a failure for one more user drops the attribution of the least
// recently failed user but KEEPS its failures in the address total. Those failures can then no
// longer be forgiven by a success: the overflow fails closed. An address never holds more
// attributed users than counted failures, so with the default limit (10) the cap is not
// reached. Memory per address is bounded whatever `limit` is (limit may be 1,000,000): about
// 200 bytes plus at most kMaxUsersPerAddress * 80 bytes.
//
// Memory bound: at most `max_tracked` addresses. Entries whose failures have all expired are
// purged as a side effect of every record(). When the table is still full, one entry is
// evicted to make room, in this order of preference:
//   1. the least recently failed address that was not blocked at its most recent failure
//      (evicting it forgives at most limit - 1 failures);
//   2. only when every tracked address is blocked, the least recently failed blocked one.
// An attacker who sprays addresses cannot grow memory, and to push a blocked address out it
// must first get every other tracked address blocked more recently, i.e. cause about
// limit * max_tracked failures (1,000,000 with the defaults) from as many distinct addresses.
// We prefer that to the alternatives: refusing to track new addresses would let a sprayer
// disable the limiter for everyone new (fail open), and treating untracked addresses as
// blocked would let it lock everyone out. Lookups use an ordered map and a short bounded
// vector, so keys chosen to collide cannot degrade them (no hash flooding).
//
// limit == 0 disables the limiter: record() returns Allowed or Failed, never Blocked,
// blocked() is always false, and nothing new is tracked.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgwarden::identity {

// The key under which failures from `address` are counted: "a.b.c.d" for IPv4 (and
// IPv4-mapped IPv6), "p:p:p:p::/64" (the RFC 5952 form of the /64 prefix) for IPv6. Accepts
// "ip", "ip:port", "[v6]" and "[v6]:port". Anything that is not an IP literal is returned
// unchanged (callers always pass a socket's peer address).
std::string address_key(std::string_view address);

class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  enum class Verdict {
    Allowed,  // success, not blocked: the user's own failures at this address are forgiven
    Failed,   // failure, not blocked: counted; the caller may report the failure
    Blocked,  // the address was already at the limit: refuse without revealing the verdict
  };

  // Sliding-window granularity: the window is split into this many buckets.
  static constexpr std::size_t kBuckets = 8;
  static constexpr std::size_t kDefaultMaxTracked = 100'000;
  // Users whose failures are attributed (and so forgivable) per address; see the header.
  static constexpr std::size_t kMaxUsersPerAddress = 32;

  FailureLimiter(std::uint32_t limit, Clock::duration window,
                 std::size_t max_tracked = kDefaultMaxTracked);
  FailureLimiter(const FailureLimiter&) = delete;
  FailureLimiter& operator=(const FailureLimiter&) = delete;

  // The decision, atomic with counting: call it when the verdict on `user`'s credentials from
  // `address` is known, before revealing it. See the header comment.
  [[nodiscard]] Verdict record(std::string_view address, std::string_view user, bool success,
                               Clock::time_point now = Clock::now());

  // True when `address` has at least `limit` failures counted in the window ending at `now`.
  // Advisory (admission); record() makes the decision.
  bool blocked(std::string_view address, Clock::time_point now = Clock::now());

  // On reload. Counts are kept. When the window changes, the counted failures of an address
  // (and of each of its users) are re-bucketed as if they had all happened at its most recent
  // failure: conservative (a block can only get longer, by at most one new window).
  void reconfigure(std::uint32_t limit, Clock::duration window);

  // Number of addresses currently tracked (for tests and metrics).
  std::size_t tracked() const;

 private:
  using Slot = std::int64_t;
  // Ring of per-bucket counts; counts[s % size] is the bucket of slot s, for the slots
  // head - kBuckets .. head.
  static constexpr std::size_t kRing = kBuckets + 1;
  using Ring = std::array<std::uint32_t, kRing>;
  using UserKey = std::array<std::byte, 32>;  // SHA-256 of the user name

  struct UserFailures {
    UserKey user{};
    // This user's share of the address ring, bucket by bucket (same head). Invariant: for
    // every bucket, the sum over the users is at most the address's count.
    Ring counts{};
    std::uint64_t last = 0;  // Entry::stamp at this user's most recent failure
  };

  struct Entry {
    Ring counts{};
    Slot head = 0;                 // newest slot the ring covers
    Slot newest = 0;               // slot of the most recent failure; all counts expire with it
    bool in_blocked_list = false;  // blocked as of its most recent failure
    std::list<std::string_view>::iterator lru;
    std::uint64_t stamp = 0;          // failures counted so far: orders users by recency
    std::vector<UserFailures> users;  // at most kMaxUsersPerAddress, unordered
  };
  using Map = std::map<std::string, Entry, std::less<>>;

  static std::optional<UserKey> user_key(std::string_view user);
  bool enabled() const { return limit_ != 0 && window_ > Clock::duration::zero(); }
  Slot slot_of(Clock::time_point t) const;
  // Moves the ring forward to the slot of `now`, dropping buckets (and users) that left the
  // window.
  void advance(Entry& e, Clock::time_point now) const;
  static std::uint64_t total(const Ring& r);
  bool expired(const Entry& e, Clock::time_point now) const;
  std::list<std::string_view>& list_of(const Entry& e) {
    return e.in_blocked_list ? blocked_lru_ : unblocked_lru_;
  }
  // The live entry for `key`, or end(): an entry found with everything expired is erased.
  Map::iterator find_live(std::string_view key, Clock::time_point now);
  void count_failure(Map::iterator it, const std::optional<UserKey>& user);
  // Removes `user`'s attributed failures from the entry; erases the entry if nothing is left.
  void forgive(Map::iterator it, const std::optional<UserKey>& user);
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
