// Rate limiting of unauthenticated requests per client address, with one token bucket per
// address: `burst` requests at once, refilled at `per_second`. Used for CancelRequests, which
// need no login: without a limit, a client could try cancel keys as fast as the network
// carries them (3,000 in 4 s were all processed), and each one that names another instance
// makes pgwarden open a connection to a peer.
//
// Keys are what identity::address_key() gives (the caller passes it), so IPv6 clients are
// limited per /64, like the failure limiter.
//
// Memory bound: at most `max_tracked` addresses. A bucket that has refilled completely is
// the same as no bucket, so such entries are dropped first; when every tracked bucket is
// still partly used, the fullest one is dropped (its owner regains at most the few tokens it
// had not spent yet). An address that was throttled is never the one forgotten while a
// less-used one remains. Ordered map: keys chosen to collide cannot degrade it.
//
// Thread-safe (one mutex; touched once per request, never on the data path).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

namespace pgwarden::session {

// Defaults for CancelRequests: a client legitimately cancels a handful of statements a
// second at most, even behind a NAT with many connections.
inline constexpr double kCancelRequestsPerSecond = 20.0;
inline constexpr std::uint32_t kCancelRequestBurst = 50;
inline constexpr std::size_t kRateLimiterMaxTracked = 10'000;

class RequestRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RequestRateLimiter(double per_second, std::uint32_t burst,
                     std::size_t max_tracked = kRateLimiterMaxTracked);
  RequestRateLimiter(const RequestRateLimiter&) = delete;
  RequestRateLimiter& operator=(const RequestRateLimiter&) = delete;

  // Takes one token of `key`'s bucket: false when none is left (drop the request).
  bool allow(std::string_view key, Clock::time_point now = Clock::now());

  std::size_t tracked() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  double refilled(const Bucket& b, Clock::time_point now) const;
  void make_room(Clock::time_point now);

  mutable std::mutex mutex_;
  double per_second_;
  double burst_;
  std::size_t max_tracked_;
  std::map<std::string, Bucket, std::less<>> buckets_;
};

}  // namespace pgwarden::session
