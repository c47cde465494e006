// FailureLimiter: blocking and unblocking over injected time, the per-address key, bounded
// memory under an address spray (without a cheap unblock), reconfigure, thread safety.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "identity/failure_limiter.h"

namespace pgwarden::identity {
namespace {

using Clock = FailureLimiter::Clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A fixed, arbitrary origin far from the clock's epoch, so bucket arithmetic is not helped by
// starting at zero.
const Clock::time_point kT0 = Clock::time_point(std::chrono::hours(1000)) + milliseconds(123);

std::string ip(std::size_t i) {
  return "10." + std::to_string((i >> 16) & 0xff) + "." + std::to_string((i >> 8) & 0xff) + "." +
         std::to_string(i & 0xff);
}

TEST(AddressKey, StripsPortAndCanonicalises) {
  EXPECT_EQ(address_key("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(address_key("192.0.2.7:5432"), "192.0.2.7");
  EXPECT_EQ(address_key("[2001:db8::1]:6432"), "2001:db8::1");
  EXPECT_EQ(address_key("[2001:db8::1]"), "2001:db8::1");
  EXPECT_EQ(address_key("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  EXPECT_EQ(address_key("2001:DB8::1"), "2001:db8::1");
  EXPECT_EQ(address_key("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(address_key("[::ffff:192.0.2.7]:40000"), "192.0.2.7");
  EXPECT_EQ(address_key("::1"), "::1");
  // Not IP literals: kept as given.
  EXPECT_EQ(address_key("db.example.com:5432"), "db.example.com:5432");
  EXPECT_EQ(address_key(""), "");
  EXPECT_EQ(address_key("[::1]x"), "[::1]x");
}

TEST(FailureLimiter, BlocksAtLimitAndUnblocksAfterWindow) {
  FailureLimiter lim(3, seconds(60));
  const std::string a = "192.0.2.1";
  EXPECT_FALSE(lim.blocked(a, kT0));
  lim.record_failure(a, kT0);
  lim.record_failure(a, kT0 + seconds(1));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(2)));
  lim.record_failure(a, kT0 + seconds(2));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(2)));
  // Other addresses are unaffected, and the port is not part of the key.
  EXPECT_FALSE(lim.blocked("192.0.2.2", kT0 + seconds(3)));
  EXPECT_TRUE(lim.blocked("192.0.2.1:5555", kT0 + seconds(3)));
  EXPECT_TRUE(lim.blocked("::ffff:192.0.2.1", kT0 + seconds(3)));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(59)));
  // Every failure counts for at least the window...
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(60) - milliseconds(1)));
  // ...and at most the window plus one bucket (60s / 8 = 7.5s).
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(60) + milliseconds(7500)));
  EXPECT_EQ(lim.tracked(), 0u);  // an entry with nothing left counted is dropped when seen
}

TEST(FailureLimiter, WindowSlides) {
  // Failures spread out: the oldest one leaves the window and unblocks one more attempt.
  FailureLimiter lim(3, seconds(80));  // buckets of 10s
  const std::string a = "198.51.100.9";
  lim.record_failure(a, kT0);
  lim.record_failure(a, kT0 + seconds(40));
  lim.record_failure(a, kT0 + seconds(70));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(75)));
  // The first failure expires by kT0 + 80s + 10s at the latest; the others are still counted.
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(91)));
  lim.record_failure(a, kT0 + seconds(92));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(92)));
  // Failures spread wider than the window never block.
  FailureLimiter slow(3, seconds(80));
  for (int i = 0; i < 20; ++i) {
    slow.record_failure(a, kT0 + seconds(50) * i);
    EXPECT_FALSE(slow.blocked(a, kT0 + seconds(50) * i)) << i;
  }
}

TEST(FailureLimiter, FailuresWhileBlockedKeepItBlocked) {
  // A client that keeps failing faster than limit per window never gets unblocked.
  FailureLimiter lim(2, seconds(10));
  const std::string a = "203.0.113.5";
  lim.record_failure(a, kT0);
  lim.record_failure(a, kT0);
  for (int i = 1; i <= 20; ++i) {
    EXPECT_TRUE(lim.blocked(a, kT0 + seconds(4) * i)) << i;
    lim.record_failure(a, kT0 + seconds(4) * i);
  }
  // It stops: one window (plus at most one bucket) after its last failure it may try again.
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(80) + seconds(5)));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(80) + milliseconds(11'250)));
}

TEST(FailureLimiter, SuccessForgetsUnlessBlocked) {
  FailureLimiter lim(3, seconds(60));
  const std::string a = "192.0.2.10";
  lim.record_failure(a, kT0);
  lim.record_failure(a, kT0);
  lim.record_success(a);
  EXPECT_EQ(lim.tracked(), 0u);
  lim.record_failure(a, kT0 + seconds(1));
  lim.record_failure(a, kT0 + seconds(1));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(1)));

  lim.record_failure(a, kT0 + seconds(2));
  ASSERT_TRUE(lim.blocked(a, kT0 + seconds(2)));
  // A connection that started before the block succeeds: the block stays.
  lim.record_success(a);
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(3)));
}

TEST(FailureLimiter, ZeroLimitDisables) {
  FailureLimiter lim(0, seconds(60));
  for (int i = 0; i < 100; ++i) {
    lim.record_failure("192.0.2.1", kT0);
  }
  EXPECT_FALSE(lim.blocked("192.0.2.1", kT0));
  EXPECT_EQ(lim.tracked(), 0u);
}

TEST(FailureLimiter, LimitOfOneBlocksOnFirstFailure) {
  FailureLimiter lim(1, seconds(1));
  lim.record_failure("192.0.2.1", kT0);
  EXPECT_TRUE(lim.blocked("192.0.2.1", kT0 + milliseconds(999)));
  EXPECT_FALSE(lim.blocked("192.0.2.1", kT0 + milliseconds(1126)));
}

TEST(FailureLimiter, MemoryIsBoundedUnderAddressSpray) {
  constexpr std::size_t kMax = 1000;
  FailureLimiter lim(3, seconds(60), kMax);
  for (std::size_t i = 0; i < 50 * kMax; ++i) {
    lim.record_failure(ip(i), kT0 + milliseconds(i / 100));
    ASSERT_LE(lim.tracked(), kMax);
  }
  EXPECT_EQ(lim.tracked(), kMax);
  // The most recent addresses are the ones kept.
  const std::size_t last = 50 * kMax - 1;
  lim.record_failure(ip(last), kT0 + seconds(1));
  lim.record_failure(ip(last), kT0 + seconds(1));
  EXPECT_TRUE(lim.blocked(ip(last), kT0 + seconds(1)));
}

TEST(FailureLimiter, SprayOfSingleFailuresDoesNotUnblock) {
  constexpr std::size_t kMax = 500;
  FailureLimiter lim(3, seconds(60), kMax);
  const std::string victim = "198.51.100.1";
  for (int i = 0; i < 3; ++i) {
    lim.record_failure(victim, kT0);
  }
  ASSERT_TRUE(lim.blocked(victim, kT0));
  // Many more addresses than the table holds, one failure each: they evict each other, never
  // the blocked address.
  for (std::size_t i = 0; i < 20 * kMax; ++i) {
    lim.record_failure(ip(i), kT0 + milliseconds(1));
  }
  EXPECT_LE(lim.tracked(), kMax);
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
}

TEST(FailureLimiter, BlockedAddressesEvictedOnlyWhenAllAreBlocked) {
  constexpr std::size_t kMax = 10;
  FailureLimiter lim(2, seconds(60), kMax);
  const std::string victim = "198.51.100.1";
  lim.record_failure(victim, kT0);
  lim.record_failure(victim, kT0);
  // kMax - 2 more blocked addresses and one with a single failure fill the table.
  for (std::size_t i = 0; i < kMax - 2; ++i) {
    lim.record_failure(ip(i), kT0 + seconds(1));
    lim.record_failure(ip(i), kT0 + seconds(1));
  }
  lim.record_failure(ip(kMax - 2), kT0 + seconds(1));
  ASSERT_EQ(lim.tracked(), kMax);
  // A new address evicts the unblocked one, not the older blocked victim.
  lim.record_failure(ip(kMax - 1), kT0 + seconds(2));
  EXPECT_EQ(lim.tracked(), kMax);
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
  EXPECT_FALSE(lim.blocked(ip(kMax - 2), kT0 + seconds(2)));
  lim.record_failure(ip(kMax - 2), kT0 + seconds(2));  // back, evicting ip(kMax - 1)
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
  lim.record_failure(ip(kMax - 2), kT0 + seconds(2));
  // Now every tracked address is blocked: the next new one evicts the least recently failed
  // blocked address, the victim. Getting here took about limit * max_tracked failures from
  // distinct addresses.
  lim.record_failure(ip(kMax), kT0 + seconds(3));
  EXPECT_EQ(lim.tracked(), kMax);
  EXPECT_FALSE(lim.blocked(victim, kT0 + seconds(3)));
  for (std::size_t i = 0; i < kMax - 1; ++i) {
    EXPECT_TRUE(lim.blocked(ip(i), kT0 + seconds(3))) << i;
  }
}

TEST(FailureLimiter, ExpiredEntriesArePurged) {
  FailureLimiter lim(5, seconds(10), 100);
  for (std::size_t i = 0; i < 100; ++i) {
    lim.record_failure(ip(i), kT0);
  }
  EXPECT_EQ(lim.tracked(), 100u);
  lim.record_failure("192.0.2.200", kT0 + seconds(30));
  EXPECT_EQ(lim.tracked(), 1u);
}

TEST(FailureLimiter, ReconfigureKeepsCounts) {
  FailureLimiter lim(5, seconds(60));
  const std::string a = "192.0.2.33";
  for (int i = 0; i < 3; ++i) {
    lim.record_failure(a, kT0);
  }
  EXPECT_FALSE(lim.blocked(a, kT0));
  // A lower limit takes effect on the counts already there.
  lim.reconfigure(3, seconds(60));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(1)));
  // Raising it again unblocks.
  lim.reconfigure(4, seconds(60));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(1)));
  lim.record_failure(a, kT0 + seconds(2));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(2)));

  // A new window keeps the failures counted, for at least the new window after the most
  // recent one.
  lim.reconfigure(4, seconds(300));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(250)));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(2) + seconds(300) + seconds(76)));

  // Turning it off unblocks everyone; turning it back on restores the counts still in window.
  FailureLimiter other(2, seconds(60));
  other.record_failure(a, kT0);
  other.record_failure(a, kT0);
  other.reconfigure(0, seconds(60));
  EXPECT_FALSE(other.blocked(a, kT0));
  other.reconfigure(2, seconds(60));
  EXPECT_TRUE(other.blocked(a, kT0 + seconds(1)));
}

TEST(FailureLimiter, ReconfigureShrinkingWindowDoesNotForgetEarly) {
  FailureLimiter lim(2, seconds(600));
  const std::string a = "192.0.2.44";
  lim.record_failure(a, kT0);
  lim.record_failure(a, kT0 + seconds(100));
  lim.reconfigure(2, seconds(10));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(105)));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(100) + seconds(10) + seconds(100)));
}

TEST(FailureLimiter, ConcurrentUseIsConsistent) {
  FailureLimiter lim(1'000'000, seconds(60), 64);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&lim, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string a = ip(static_cast<std::size_t>((t * kPerThread + i) % 100));
        lim.record_failure(a, kT0);
        (void)lim.blocked(a, kT0);
        if (i % 7 == 0) {
          lim.record_success(a);
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_LE(lim.tracked(), 64u);
  // One shared address counted exactly across threads.
  FailureLimiter shared(kThreads * kPerThread, seconds(60));
  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&shared] {
      for (int i = 0; i < kPerThread; ++i) {
        shared.record_failure("192.0.2.1", kT0);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_TRUE(shared.blocked("192.0.2.1", kT0));
  shared.reconfigure(kThreads * kPerThread + 1, seconds(60));
  EXPECT_FALSE(shared.blocked("192.0.2.1", kT0));
}

}  // namespace
}  // namespace pgwarden::identity
