#include "session/rate_limiter.h"

#include <algorithm>

namespace pgwarden::session {

RequestRateLimiter::RequestRateLimiter(double per_second, std::uint32_t burst,
                                       std::size_t max_tracked)
    : per_second_(per_second), burst_(burst), max_tracked_(std::max<std::size_t>(max_tracked, 1)) {}

double RequestRateLimiter::refilled(const Bucket& b, Clock::time_point now) const {
  const double elapsed =
      std::chrono::duration<double>(std::max(now - b.updated, Clock::duration::zero())).count();
  return std::min(burst_, b.tokens + elapsed * per_second_);
}

void RequestRateLimiter::make_room(Clock::time_point now) {
  std::erase_if(buckets_, [&](const auto& kv) { return refilled(kv.second, now) >= burst_; });
  if (buckets_.size() < max_tracked_) {
    return;
  }
  auto fullest = std::max_element(buckets_.begin(), buckets_.end(), [&](auto& a, auto& b) {
    return refilled(a.second, now) < refilled(b.second, now);
  });
  buckets_.erase(fullest);
}

bool RequestRateLimiter::allow(std::string_view key, Clock::time_point now) {
  if (burst_ < 1) {
    return false;
  }
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_tracked_) {
      make_room(now);
    }
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = refilled(b, now);
  b.updated = now;
  if (b.tokens < 1) {
    return false;
  }
  b.tokens -= 1;
  return true;
}

std::size_t RequestRateLimiter::tracked() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

}  // namespace pgwarden::session
