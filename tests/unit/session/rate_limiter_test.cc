#include "session/rate_limiter.h"

#include <gtest/gtest.h>

#include <string>

namespace pgwarden::session {
namespace {

using Clock = RequestRateLimiter::Clock;
using std::chrono::milliseconds;

int allowed_of(RequestRateLimiter& l, std::string_view key, int n, Clock::time_point now) {
  int allowed = 0;
  for (int i = 0; i < n; ++i) {
    allowed += l.allow(key, now) ? 1 : 0;
  }
  return allowed;
}

// The flood of the finding: thousands of requests at once get the burst, no more.
TEST(RequestRateLimiter, FloodGetsOnlyTheBurst) {
  RequestRateLimiter l(20, 50);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(allowed_of(l, "192.0.2.1", 3000, t0), 50);
  // 4 s later: 80 more tokens at 20/s, capped by the burst of 50.
  EXPECT_EQ(allowed_of(l, "192.0.2.1", 3000, t0 + std::chrono::seconds(4)), 50);
}

TEST(RequestRateLimiter, RefillsAtTheConfiguredRate) {
  RequestRateLimiter l(10, 5);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(allowed_of(l, "a", 10, t0), 5);
  EXPECT_FALSE(l.allow("a", t0 + milliseconds(50)));  // half a token
  EXPECT_TRUE(l.allow("a", t0 + milliseconds(100)));  // one token after 100 ms
  EXPECT_FALSE(l.allow("a", t0 + milliseconds(100)));
  EXPECT_EQ(allowed_of(l, "a", 10, t0 + milliseconds(400)), 3);
}

TEST(RequestRateLimiter, AddressesAreIndependent) {
  RequestRateLimiter l(1, 2);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(allowed_of(l, "a", 5, t0), 2);
  EXPECT_EQ(allowed_of(l, "b", 5, t0), 2);
}

TEST(RequestRateLimiter, ClockGoingBackwardsGivesNothing) {
  RequestRateLimiter l(1, 1);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_TRUE(l.allow("a", t0));
  EXPECT_FALSE(l.allow("a", t0 - std::chrono::seconds(30)));
}

// Spraying addresses cannot grow memory, and cannot push a throttled address out while a
// less-used one remains.
TEST(RequestRateLimiter, BoundedAndKeepsThrottledAddresses) {
  RequestRateLimiter l(1, 3, 4);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(allowed_of(l, "attacker", 10, t0), 3);  // throttled: 0 tokens
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(l.allow("spray" + std::to_string(i), t0));
    EXPECT_LE(l.tracked(), 4u);
  }
  EXPECT_FALSE(l.allow("attacker", t0));
}

TEST(RequestRateLimiter, FullBucketsAreForgottenFirst) {
  RequestRateLimiter l(1, 2, 2);
  const auto t0 = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_TRUE(l.allow("a", t0));
  EXPECT_TRUE(l.allow("b", t0 + std::chrono::seconds(10)));  // "a" has refilled by now
  EXPECT_TRUE(l.allow("c", t0 + std::chrono::seconds(10)));
  EXPECT_LE(l.tracked(), 2u);
}

TEST(RequestRateLimiter, ZeroBurstAllowsNothing) {
  RequestRateLimiter l(100, 0);
  EXPECT_FALSE(l.allow("a"));
}

}  // namespace
}  // namespace pgwarden::session
