// FailureLimiter: the verdict contract of record() (a success forgives only its own user's
// failures: finding M1; deciding and counting atomically so parallel handshakes cannot exceed
// the limit: finding M2), blocking and unblocking over injected time, the per-address key
// (IPv6 /64), bounded memory under address and user-name sprays (without a cheap unblock),
// reconfigure, thread safety.
#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "identity/failure_limiter.h"

namespace pgwarden::identity {
namespace {

using Clock = FailureLimiter::Clock;
using Verdict = FailureLimiter::Verdict;
using std::chrono::milliseconds;
using std::chrono::seconds;

// A fixed, arbitrary origin far from the clock's epoch, so bucket arithmetic is not helped by
// starting at zero.
const Clock::time_point kT0 = Clock::time_point(std::chrono::hours(1000)) + milliseconds(123);

std::string ip(std::size_t i) {
  return "10." + std::to_string((i >> 16) & 0xff) + "." + std::to_string((i >> 8) & 0xff) + "." +
         std::to_string(i & 0xff);
}

Verdict fail(FailureLimiter& lim, std::string_view address, std::string_view user,
             Clock::time_point t) {
  return lim.record(address, user, false, t);
}

Verdict succeed(FailureLimiter& lim, std::string_view address, std::string_view user,
                Clock::time_point t) {
  return lim.record(address, user, true, t);
}

// How many more failures (by a fresh user) `address` gets before Blocked, i.e. limit minus the
// failures counted now. Bounded so a broken limiter fails the test instead of hanging.
int failures_until_blocked(FailureLimiter& lim, std::string_view address, Clock::time_point t) {
  for (int n = 0; n < 10'000; ++n) {
    if (fail(lim, address, "probe", t) == Verdict::Blocked) {
      return n;
    }
  }
  return -1;
}

TEST(AddressKey, StripsPortAndCanonicalises) {
  EXPECT_EQ(address_key("192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(address_key("192.0.2.7:5432"), "192.0.2.7");
  EXPECT_EQ(address_key("[2001:db8::1]:6432"), "2001:db8::/64");
  EXPECT_EQ(address_key("[2001:db8::1]"), "2001:db8::/64");
  EXPECT_EQ(address_key("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::/64");
  EXPECT_EQ(address_key("2001:DB8::1"), "2001:db8::/64");
  EXPECT_EQ(address_key("::ffff:192.0.2.7"), "192.0.2.7");
  EXPECT_EQ(address_key("[::ffff:192.0.2.7]:40000"), "192.0.2.7");
  EXPECT_EQ(address_key("::1"), "::/64");
  // Not IP literals: kept as given.
  EXPECT_EQ(address_key("db.example.com:5432"), "db.example.com:5432");
  EXPECT_EQ(address_key(""), "");
  EXPECT_EQ(address_key("[::1]x"), "[::1]x");
}

TEST(AddressKey, Ipv6KeyIsTheSlash64) {
  // Everything in 2001:db8:1:2::/64 is one key, whatever the interface identifier.
  EXPECT_EQ(address_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
  EXPECT_EQ(address_key("[2001:db8:1:2:a:b:c:d]:5432"), "2001:db8:1:2::/64");
  // The neighbouring /64s are not.
  EXPECT_EQ(address_key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
  EXPECT_EQ(address_key("2001:db8:1:1:ffff:ffff:ffff:ffff"), "2001:db8:1:1::/64");
  // IPv4-mapped addresses fold onto IPv4 before any prefix is taken: they all live in
  // ::ffff:0:0/96, and must not share one key.
  EXPECT_EQ(address_key("::ffff:198.51.100.1"), "198.51.100.1");
  EXPECT_NE(address_key("::ffff:198.51.100.1"), address_key("::ffff:198.51.100.2"));
}

TEST(FailureLimiter, BlocksAtLimitAndUnblocksAfterWindow) {
  FailureLimiter lim(3, seconds(60));
  const std::string a = "192.0.2.1";
  EXPECT_FALSE(lim.blocked(a, kT0));
  EXPECT_EQ(fail(lim, a, "alice", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, a, "bob", kT0 + seconds(1)), Verdict::Failed);
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(2)));
  EXPECT_EQ(fail(lim, a, "alice", kT0 + seconds(2)), Verdict::Failed);
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(2)));
  EXPECT_EQ(fail(lim, a, "carol", kT0 + seconds(2)), Verdict::Blocked);
  // Other addresses are unaffected, and the port is not part of the key.
  EXPECT_FALSE(lim.blocked("192.0.2.2", kT0 + seconds(3)));
  EXPECT_EQ(fail(lim, "192.0.2.2", "alice", kT0 + seconds(3)), Verdict::Failed);
  EXPECT_TRUE(lim.blocked("192.0.2.1:5555", kT0 + seconds(3)));
  EXPECT_TRUE(lim.blocked("::ffff:192.0.2.1", kT0 + seconds(3)));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(59)));
  // Every failure counts for at least the window...
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(60) - milliseconds(1)));
  EXPECT_EQ(fail(lim, a, "alice", kT0 + seconds(60) - milliseconds(1)), Verdict::Blocked);
  // ...and at most the window plus one bucket (60s / 8 = 7.5s).
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(60) + milliseconds(7500)));
  EXPECT_EQ(lim.tracked(), 1u);  // an entry with nothing left counted is dropped when seen
  EXPECT_FALSE(lim.blocked("192.0.2.2", kT0 + seconds(70)));
  EXPECT_EQ(lim.tracked(), 0u);
}

TEST(FailureLimiter, WindowSlides) {
  // Failures spread out: the oldest one leaves the window and unblocks one more attempt.
  FailureLimiter lim(3, seconds(80));  // buckets of 10s
  const std::string a = "198.51.100.9";
  fail(lim, a, "u", kT0);
  fail(lim, a, "u", kT0 + seconds(40));
  fail(lim, a, "u", kT0 + seconds(70));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(75)));
  EXPECT_EQ(fail(lim, a, "u", kT0 + seconds(75)), Verdict::Blocked);
  // The first failure expires by kT0 + 80s + 10s at the latest; the others are still counted.
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(91)));
  EXPECT_EQ(fail(lim, a, "u", kT0 + seconds(92)), Verdict::Failed);
  EXPECT_EQ(fail(lim, a, "u", kT0 + seconds(92)), Verdict::Blocked);
  // Failures spread wider than the window never block.
  FailureLimiter slow(3, seconds(80));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(fail(slow, a, "u", kT0 + seconds(50) * i), Verdict::Failed) << i;
    EXPECT_FALSE(slow.blocked(a, kT0 + seconds(50) * i)) << i;
  }
}

TEST(FailureLimiter, BlockedAttemptsAreNotCounted) {
  // An attempt refused as Blocked tested no password: it does not extend the block, so the
  // address gets exactly `limit` verdicts per window however hard it hammers.
  FailureLimiter lim(2, seconds(10));  // buckets of 1.25s
  const std::string a = "203.0.113.5";
  EXPECT_EQ(fail(lim, a, "victim", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, a, "victim", kT0), Verdict::Failed);
  for (int i = 1; i <= 9; ++i) {
    EXPECT_EQ(fail(lim, a, "victim", kT0 + seconds(1) * i), Verdict::Blocked) << i;
  }
  // One window (plus at most one bucket) after the last counted failure: two more verdicts.
  EXPECT_EQ(fail(lim, a, "victim", kT0 + milliseconds(11'250)), Verdict::Failed);
  EXPECT_EQ(fail(lim, a, "victim", kT0 + milliseconds(11'250)), Verdict::Failed);
  EXPECT_EQ(fail(lim, a, "victim", kT0 + milliseconds(11'250)), Verdict::Blocked);
}

TEST(FailureLimiter, SuccessForAnotherUserDoesNotForgive) {
  // Finding M1, replayed: four guesses at "victim", one good login as "me" (the attacker's own
  // account), repeated. The logins must not buy more guesses.
  FailureLimiter lim(5, seconds(30));
  const std::string a = "192.0.2.66";
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(fail(lim, a, "victim", kT0), Verdict::Failed) << i;
  }
  EXPECT_EQ(succeed(lim, a, "me", kT0), Verdict::Allowed);
  EXPECT_EQ(fail(lim, a, "victim", kT0), Verdict::Failed);
  // The fifth failure reached the limit: whatever comes next is Blocked.
  EXPECT_EQ(fail(lim, a, "victim", kT0), Verdict::Blocked);
  EXPECT_EQ(succeed(lim, a, "me", kT0), Verdict::Blocked);

  // The whole attack, 100 ms per round for 10 s: exactly `limit` verdicts on victim.
  FailureLimiter attacked(5, seconds(30));
  int failed = 0;
  for (int round = 0; round < 100; ++round) {
    const auto t = kT0 + milliseconds(100) * round;
    for (int i = 0; i < 4; ++i) {
      failed += fail(attacked, a, "victim", t) == Verdict::Failed ? 1 : 0;
    }
    (void)succeed(attacked, a, "me", t);
  }
  EXPECT_EQ(failed, 5);
}

TEST(FailureLimiter, SuccessForgivesOnlyItsOwnUser) {
  FailureLimiter lim(6, seconds(60));
  const std::string a = "192.0.2.10";
  fail(lim, a, "alice", kT0);
  fail(lim, a, "alice", kT0 + seconds(20));  // another bucket
  fail(lim, a, "bob", kT0 + seconds(21));
  fail(lim, a, "bob", kT0 + seconds(22));
  // alice mistyped twice, then logs in: her two failures go, bob's two stay.
  EXPECT_EQ(succeed(lim, a, "alice", kT0 + seconds(23)), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(lim, a, kT0 + seconds(23)), 4);
  // A success for a user with nothing counted changes nothing.
  FailureLimiter other(6, seconds(60));
  fail(other, a, "bob", kT0);
  fail(other, a, "bob", kT0);
  EXPECT_EQ(succeed(other, a, "nobody", kT0), Verdict::Allowed);
  EXPECT_EQ(succeed(other, a, "Bob", kT0), Verdict::Allowed);  // names are exact
  EXPECT_EQ(failures_until_blocked(other, a, kT0), 4);
  // Forgiving the last user's failures forgets the address.
  FailureLimiter solo(6, seconds(60));
  fail(solo, a, "bob", kT0);
  EXPECT_EQ(solo.tracked(), 1u);
  EXPECT_EQ(succeed(solo, a, "bob", kT0 + seconds(1)), Verdict::Allowed);
  EXPECT_EQ(solo.tracked(), 0u);
}

TEST(FailureLimiter, SuccessForgivesOnlyFailuresStillInTheWindow) {
  // Per-bucket attribution: a user's expired failures are already gone from the total, and
  // forgiving must not subtract them a second time from other users' failures.
  FailureLimiter lim(4, seconds(80));  // buckets of 10s
  const std::string a = "192.0.2.11";
  fail(lim, a, "alice", kT0);
  fail(lim, a, "bob", kT0 + seconds(40));
  fail(lim, a, "bob", kT0 + seconds(40));
  fail(lim, a, "alice", kT0 + seconds(70));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(75)));
  // alice's first failure has expired: 3 counted, of which 1 is alice's.
  EXPECT_EQ(succeed(lim, a, "alice", kT0 + seconds(91)), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(lim, a, kT0 + seconds(91)), 2);
  // bob's failures still expire on their own schedule, not later and not earlier.
  FailureLimiter again(4, seconds(80));
  fail(again, a, "alice", kT0);
  fail(again, a, "bob", kT0 + seconds(40));
  fail(again, a, "bob", kT0 + seconds(40));
  fail(again, a, "alice", kT0 + seconds(70));
  EXPECT_EQ(succeed(again, a, "alice", kT0 + seconds(91)), Verdict::Allowed);
  fail(again, a, "carol", kT0 + seconds(91));
  fail(again, a, "carol", kT0 + seconds(91));
  EXPECT_TRUE(again.blocked(a, kT0 + seconds(119)));  // bob's are counted for >= 80s
  // Gone by 80s + one bucket, leaving exactly carol's two: alice's remaining failure was
  // removed from its own bucket, not from bob's older one.
  EXPECT_EQ(failures_until_blocked(again, a, kT0 + seconds(131)), 2);
}

TEST(FailureLimiter, BlockedEvenForACorrectPassword) {
  // Once blocked, a success is not revealed (the caller refuses as Blocked) and lifts nothing:
  // a parallel handshake that guessed right learns nothing from it.
  FailureLimiter lim(3, seconds(60));
  const std::string a = "192.0.2.20";
  for (int i = 0; i < 3; ++i) {
    fail(lim, a, "victim", kT0);
  }
  EXPECT_EQ(succeed(lim, a, "victim", kT0 + seconds(1)), Verdict::Blocked);
  EXPECT_EQ(succeed(lim, a, "me", kT0 + seconds(1)), Verdict::Blocked);
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(59)));
  // Nothing was counted or forgiven: the block ends on the original schedule.
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(68)));
  EXPECT_EQ(succeed(lim, a, "victim", kT0 + seconds(68)), Verdict::Allowed);
}

TEST(FailureLimiter, Ipv6Slash64SharesOneBudget) {
  FailureLimiter lim(3, seconds(60));
  EXPECT_EQ(fail(lim, "2001:db8:1:2::1", "u", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, "[2001:db8:1:2:aaaa::2]:40000", "u", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, "2001:db8:1:2:ffff:ffff:ffff:fffe", "u", kT0), Verdict::Failed);
  // Rotating the interface identifier does not get a fresh budget.
  EXPECT_TRUE(lim.blocked("2001:db8:1:2:1234:5678:9abc:def0", kT0));
  EXPECT_EQ(fail(lim, "2001:db8:1:2::99", "u", kT0), Verdict::Blocked);
  // The neighbouring /64s are separate.
  EXPECT_FALSE(lim.blocked("2001:db8:1:3::1", kT0));
  EXPECT_FALSE(lim.blocked("2001:db8:1:1:ffff:ffff:ffff:ffff", kT0));
  EXPECT_EQ(fail(lim, "2001:db8:1:3::1", "u", kT0), Verdict::Failed);
  EXPECT_EQ(lim.tracked(), 2u);
  // A success from elsewhere in the /64 forgives the same user's failures there.
  FailureLimiter other(3, seconds(60));
  fail(other, "2001:db8:1:2::1", "alice", kT0);
  fail(other, "2001:db8:1:2::2", "alice", kT0);
  EXPECT_EQ(succeed(other, "2001:db8:1:2::3", "alice", kT0), Verdict::Allowed);
  EXPECT_EQ(other.tracked(), 0u);
}

TEST(FailureLimiter, Ipv4MappedFoldsOntoIpv4) {
  FailureLimiter lim(3, seconds(60));
  EXPECT_EQ(fail(lim, "192.0.2.7", "u", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, "::ffff:192.0.2.7", "u", kT0), Verdict::Failed);
  EXPECT_EQ(fail(lim, "[::ffff:192.0.2.7]:5432", "u", kT0), Verdict::Failed);
  EXPECT_TRUE(lim.blocked("192.0.2.7:1234", kT0));
  EXPECT_EQ(fail(lim, "::ffff:192.0.2.7", "u", kT0), Verdict::Blocked);
  // Another IPv4 host, spelled as mapped, is not in the blocked host's "/64".
  EXPECT_FALSE(lim.blocked("::ffff:192.0.2.8", kT0));
  EXPECT_EQ(fail(lim, "::ffff:192.0.2.8", "u", kT0), Verdict::Failed);
  EXPECT_EQ(lim.tracked(), 2u);
}

TEST(FailureLimiter, UserAttributionOverflowKeepsTheCount) {
  constexpr std::size_t kMaxUsers = FailureLimiter::kMaxUsersPerAddress;
  constexpr std::uint32_t kLimit = 40;
  static_assert(kMaxUsers + 2 < kLimit);
  const std::string a = "192.0.2.30";
  auto user = [](std::size_t i) { return "user" + std::to_string(i); };
  FailureLimiter lim(kLimit, seconds(60));
  for (std::size_t i = 0; i < kMaxUsers; ++i) {
    ASSERT_EQ(fail(lim, a, user(i), kT0), Verdict::Failed) << i;
  }
  // user0 fails again, so user1 is now the least recently failed.
  ASSERT_EQ(fail(lim, a, user(0), kT0 + seconds(1)), Verdict::Failed);
  // One user too many: user1's attribution is dropped, its failure stays counted.
  ASSERT_EQ(fail(lim, a, user(kMaxUsers), kT0 + seconds(2)), Verdict::Failed);
  // kMaxUsers + 2 counted. user1 cannot be forgiven any more; user0's two failures can.
  EXPECT_EQ(succeed(lim, a, user(1), kT0 + seconds(3)), Verdict::Allowed);
  EXPECT_EQ(succeed(lim, a, user(0), kT0 + seconds(3)), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(lim, a, kT0 + seconds(3)), static_cast<int>(kLimit - kMaxUsers));

  // A spray of user names cannot wash failures out either: each new name drops an older
  // attribution, and every failure stays counted.
  FailureLimiter spray(kLimit, seconds(60));
  for (std::size_t i = 0; i < kLimit - 1; ++i) {
    ASSERT_EQ(fail(spray, a, user(i), kT0), Verdict::Failed) << i;
  }
  for (std::size_t i = 0; i < kLimit - 1 - kMaxUsers; ++i) {
    EXPECT_EQ(succeed(spray, a, user(i), kT0), Verdict::Allowed);  // dropped: nothing forgiven
  }
  EXPECT_EQ(failures_until_blocked(spray, a, kT0), 1);
}

TEST(FailureLimiter, LongUserNamesAreKeptApart) {
  // Names as long as a startup packet allows, differing only in their last byte.
  const std::string base(9'000, 'x');
  const std::string victim = base + "v";
  const std::string me = base + "m";
  FailureLimiter lim(3, seconds(60));
  const std::string a = "192.0.2.31";
  fail(lim, a, victim, kT0);
  fail(lim, a, victim, kT0);
  EXPECT_EQ(succeed(lim, a, me, kT0), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(lim, a, kT0), 1);
  // The empty name is a name like any other (the deprecated wrappers use it).
  FailureLimiter other(3, seconds(60));
  fail(other, a, "", kT0);
  EXPECT_EQ(succeed(other, a, "x", kT0), Verdict::Allowed);
  EXPECT_EQ(other.tracked(), 1u);
  EXPECT_EQ(succeed(other, a, "", kT0), Verdict::Allowed);
  EXPECT_EQ(other.tracked(), 0u);
}

TEST(FailureLimiter, ZeroLimitDisables) {
  FailureLimiter lim(0, seconds(60));
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(fail(lim, "192.0.2.1", "u", kT0), Verdict::Failed);
  }
  EXPECT_EQ(succeed(lim, "192.0.2.1", "u", kT0), Verdict::Allowed);
  EXPECT_FALSE(lim.blocked("192.0.2.1", kT0));
  EXPECT_EQ(lim.tracked(), 0u);
}

TEST(FailureLimiter, LimitOfOneBlocksOnFirstFailure) {
  FailureLimiter lim(1, seconds(1));
  EXPECT_EQ(fail(lim, "192.0.2.1", "u", kT0), Verdict::Failed);
  EXPECT_TRUE(lim.blocked("192.0.2.1", kT0 + milliseconds(999)));
  EXPECT_EQ(fail(lim, "192.0.2.1", "u", kT0 + milliseconds(999)), Verdict::Blocked);
  EXPECT_FALSE(lim.blocked("192.0.2.1", kT0 + milliseconds(1126)));
}

TEST(FailureLimiter, MemoryIsBoundedUnderAddressSpray) {
  constexpr std::size_t kMax = 1000;
  FailureLimiter lim(3, seconds(60), kMax);
  for (std::size_t i = 0; i < 50 * kMax; ++i) {
    fail(lim, ip(i), "u", kT0 + milliseconds(i / 100));
    ASSERT_LE(lim.tracked(), kMax);
  }
  EXPECT_EQ(lim.tracked(), kMax);
  // The most recent addresses are the ones kept.
  const std::size_t last = 50 * kMax - 1;
  fail(lim, ip(last), "u", kT0 + seconds(1));
  fail(lim, ip(last), "u", kT0 + seconds(1));
  EXPECT_TRUE(lim.blocked(ip(last), kT0 + seconds(1)));
}

TEST(FailureLimiter, SprayOfSingleFailuresDoesNotUnblock) {
  constexpr std::size_t kMax = 500;
  FailureLimiter lim(3, seconds(60), kMax);
  const std::string victim = "198.51.100.1";
  for (int i = 0; i < 3; ++i) {
    fail(lim, victim, "u", kT0);
  }
  ASSERT_TRUE(lim.blocked(victim, kT0));
  // Many more addresses than the table holds, one failure each: they evict each other, never
  // the blocked address.
  for (std::size_t i = 0; i < 20 * kMax; ++i) {
    fail(lim, ip(i), "u", kT0 + milliseconds(1));
  }
  EXPECT_LE(lim.tracked(), kMax);
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
}

TEST(FailureLimiter, BlockedAddressesEvictedOnlyWhenAllAreBlocked) {
  constexpr std::size_t kMax = 10;
  FailureLimiter lim(2, seconds(60), kMax);
  const std::string victim = "198.51.100.1";
  fail(lim, victim, "u", kT0);
  fail(lim, victim, "u", kT0);
  // kMax - 2 more blocked addresses and one with a single failure fill the table.
  for (std::size_t i = 0; i < kMax - 2; ++i) {
    fail(lim, ip(i), "u", kT0 + seconds(1));
    fail(lim, ip(i), "u", kT0 + seconds(1));
  }
  fail(lim, ip(kMax - 2), "u", kT0 + seconds(1));
  ASSERT_EQ(lim.tracked(), kMax);
  // A new address evicts the unblocked one, not the older blocked victim.
  fail(lim, ip(kMax - 1), "u", kT0 + seconds(2));
  EXPECT_EQ(lim.tracked(), kMax);
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
  EXPECT_FALSE(lim.blocked(ip(kMax - 2), kT0 + seconds(2)));
  fail(lim, ip(kMax - 2), "u", kT0 + seconds(2));  // back, evicting ip(kMax - 1)
  EXPECT_TRUE(lim.blocked(victim, kT0 + seconds(2)));
  fail(lim, ip(kMax - 2), "u", kT0 + seconds(2));
  // Now every tracked address is blocked: the next new one evicts the least recently failed
  // blocked address, the victim. Getting here took about limit * max_tracked failures from
  // distinct addresses.
  fail(lim, ip(kMax), "u", kT0 + seconds(3));
  EXPECT_EQ(lim.tracked(), kMax);
  EXPECT_FALSE(lim.blocked(victim, kT0 + seconds(3)));
  for (std::size_t i = 0; i < kMax - 1; ++i) {
    EXPECT_TRUE(lim.blocked(ip(i), kT0 + seconds(3))) << i;
  }
}

TEST(FailureLimiter, ExpiredEntriesArePurged) {
  FailureLimiter lim(5, seconds(10), 100);
  for (std::size_t i = 0; i < 100; ++i) {
    fail(lim, ip(i), "u", kT0);
  }
  EXPECT_EQ(lim.tracked(), 100u);
  fail(lim, "192.0.2.200", "u", kT0 + seconds(30));
  EXPECT_EQ(lim.tracked(), 1u);
}

TEST(FailureLimiter, ReconfigureKeepsCounts) {
  FailureLimiter lim(5, seconds(60));
  const std::string a = "192.0.2.33";
  for (int i = 0; i < 3; ++i) {
    fail(lim, a, "u", kT0);
  }
  EXPECT_FALSE(lim.blocked(a, kT0));
  // A lower limit takes effect on the counts already there.
  lim.reconfigure(3, seconds(60));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(1)));
  EXPECT_EQ(fail(lim, a, "u", kT0 + seconds(1)), Verdict::Blocked);
  // Raising it again unblocks.
  lim.reconfigure(4, seconds(60));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(1)));
  EXPECT_EQ(fail(lim, a, "u", kT0 + seconds(2)), Verdict::Failed);
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(2)));

  // A new window keeps the failures counted, for at least the new window after the most
  // recent one.
  lim.reconfigure(4, seconds(300));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(250)));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(2) + seconds(300) + seconds(76)));

  // Turning it off unblocks everyone; turning it back on restores the counts still in window.
  FailureLimiter other(2, seconds(60));
  fail(other, a, "u", kT0);
  fail(other, a, "u", kT0);
  other.reconfigure(0, seconds(60));
  EXPECT_FALSE(other.blocked(a, kT0));
  EXPECT_EQ(fail(other, a, "u", kT0), Verdict::Failed);
  other.reconfigure(2, seconds(60));
  EXPECT_TRUE(other.blocked(a, kT0 + seconds(1)));
}

TEST(FailureLimiter, ReconfigureShrinkingWindowDoesNotForgetEarly) {
  FailureLimiter lim(2, seconds(600));
  const std::string a = "192.0.2.44";
  fail(lim, a, "u", kT0);
  fail(lim, a, "u", kT0 + seconds(100));
  lim.reconfigure(2, seconds(10));
  EXPECT_TRUE(lim.blocked(a, kT0 + seconds(105)));
  EXPECT_FALSE(lim.blocked(a, kT0 + seconds(100) + seconds(10) + seconds(100)));
}

TEST(FailureLimiter, ReconfigureKeepsAttribution) {
  // After re-bucketing, a success still forgives exactly its own user's failures.
  FailureLimiter lim(5, seconds(600));
  const std::string a = "192.0.2.45";
  fail(lim, a, "alice", kT0);
  fail(lim, a, "bob", kT0 + seconds(100));
  fail(lim, a, "alice", kT0 + seconds(200));
  lim.reconfigure(5, seconds(10));
  EXPECT_EQ(succeed(lim, a, "alice", kT0 + seconds(201)), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(lim, a, kT0 + seconds(201)), 4);
  // And reconfiguring the limit alone leaves the attribution untouched.
  FailureLimiter other(5, seconds(60));
  fail(other, a, "alice", kT0);
  fail(other, a, "bob", kT0);
  other.reconfigure(2, seconds(60));
  EXPECT_EQ(succeed(other, a, "alice", kT0), Verdict::Blocked);
  other.reconfigure(3, seconds(60));
  EXPECT_EQ(succeed(other, a, "alice", kT0), Verdict::Allowed);
  EXPECT_EQ(failures_until_blocked(other, a, kT0), 2);
}

struct VerdictCounts {
  std::atomic<int> allowed{0};
  std::atomic<int> failed{0};
  std::atomic<int> blocked{0};
  void add(Verdict v) {
    switch (v) {
      case Verdict::Allowed:
        ++allowed;
        break;
      case Verdict::Failed:
        ++failed;
        break;
      case Verdict::Blocked:
        ++blocked;
        break;
    }
  }
};

TEST(FailureLimiter, ParallelHandshakesGetAtMostLimitVerdicts) {
  // Finding M2: many handshakes from one address reach their verdict at the same moment. The
  // admission check passed for all of them; record() must still hand out exactly `limit`
  // Failed verdicts and Blocked to the rest. Repeated to vary the interleaving.
  constexpr int kThreads = 48;
  constexpr std::uint32_t kLimit = 5;
  for (int round = 0; round < 20; ++round) {
    FailureLimiter lim(kLimit, seconds(30));
    const std::string a = ip(static_cast<std::size_t>(round));
    ASSERT_FALSE(lim.blocked(a, kT0));
    VerdictCounts counts;
    std::latch start(kThreads);
    std::vector<std::jthread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        counts.add(lim.record(a, "victim", false, kT0));
      });
    }
    threads.clear();  // joins
    EXPECT_EQ(counts.failed.load(), static_cast<int>(kLimit)) << round;
    EXPECT_EQ(counts.blocked.load(), kThreads - static_cast<int>(kLimit)) << round;
    EXPECT_EQ(counts.allowed.load(), 0) << round;
  }
}

TEST(FailureLimiter, ParallelGuessesAndOwnLoginsGetAtMostLimitVerdicts) {
  // M1 and M2 together: half the handshakes guess at "victim", half log in as the attacker's
  // own "me", all at once. The logins forgive nothing of victim's, so exactly `limit` guesses
  // get a verdict; each login is Allowed or Blocked depending on when it lands.
  constexpr int kGuesses = 24;
  constexpr int kLogins = 24;
  constexpr std::uint32_t kLimit = 5;
  for (int round = 0; round < 20; ++round) {
    FailureLimiter lim(kLimit, seconds(30));
    const std::string a = ip(static_cast<std::size_t>(round));
    VerdictCounts guesses;
    VerdictCounts logins;
    std::latch start(kGuesses + kLogins);
    std::vector<std::jthread> threads;
    for (int t = 0; t < kGuesses + kLogins; ++t) {
      const bool login = t % 2 == 0;
      threads.emplace_back([&, login] {
        start.arrive_and_wait();
        if (login) {
          logins.add(lim.record(a, "me", true, kT0));
        } else {
          guesses.add(lim.record(a, "victim", false, kT0));
        }
      });
    }
    threads.clear();
    EXPECT_EQ(guesses.failed.load(), static_cast<int>(kLimit)) << round;
    EXPECT_EQ(guesses.blocked.load(), kGuesses - static_cast<int>(kLimit)) << round;
    EXPECT_EQ(logins.failed.load(), 0) << round;
    EXPECT_EQ(logins.allowed.load() + logins.blocked.load(), kLogins) << round;
    EXPECT_TRUE(lim.blocked(a, kT0));
  }
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
        const std::string u = "user" + std::to_string(i % 40);
        (void)lim.record(a, u, false, kT0);
        (void)lim.blocked(a, kT0);
        if (i % 7 == 0) {
          (void)lim.record(a, u, true, kT0);
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
  std::atomic<int> failed{0};
  threads.clear();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&shared, &failed, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (shared.record("192.0.2.1", "user" + std::to_string(t), false, kT0) == Verdict::Failed) {
          ++failed;
        }
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failed.load(), kThreads * kPerThread);
  EXPECT_TRUE(shared.blocked("192.0.2.1", kT0));
  shared.reconfigure(kThreads * kPerThread + 1, seconds(60));
  EXPECT_FALSE(shared.blocked("192.0.2.1", kT0));
}

}  // namespace
}  // namespace pgwarden::identity
