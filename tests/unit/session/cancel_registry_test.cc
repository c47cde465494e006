// CancelRegistry: client keys carry the upstream's real PID and a secret of pgwarden's own, and
// map back to the upstream key and backend; a request matches only with the exact pid and
// secret (any wrong byte, a shorter or longer secret: not found); sessions that share a PID
// (two servers) are told apart by their secrets; with cluster routing the first secret byte
// names the instance; concurrent use from several threads keeps the table consistent.
#include "session/cancel_registry.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "wire/bytes.h"
#include "wire/limits.h"

namespace pgwarden::session {
namespace {

struct FakeBackend {
  int id;
};

CancelTarget target(std::uint32_t upstream_pid, std::uint8_t fill, int backend_id) {
  CancelTarget t;
  t.upstream_pid = upstream_pid;
  t.upstream_secret.assign(4, std::byte{fill});
  t.backend = std::make_shared<const FakeBackend>(FakeBackend{backend_id});
  return t;
}

int backend_id(const CancelTarget& t) {
  return std::static_pointer_cast<const FakeBackend>(t.backend)->id;
}

TEST(CancelRegistry, AddThenFindReturnsTheUpstreamTarget) {
  CancelRegistry reg(7, false);
  auto key = reg.add(target(1234, 0xab, 1), 4);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->secret.size(), 4u);
  EXPECT_NE(key->pid, 0u);
  EXPECT_EQ(reg.size(), 1u);

  auto found = reg.find(key->pid, key->secret);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->upstream_pid, 1234u);
  EXPECT_EQ(found->upstream_secret, std::vector<std::byte>(4, std::byte{0xab}));
  EXPECT_EQ(backend_id(*found), 1);
  // The client sees the server's PID (pg_terminate_backend, NOTIFY's be_pid) but never the
  // server's secret.
  EXPECT_EQ(key->pid, 1234u);
  EXPECT_NE(key->secret, found->upstream_secret);
}

TEST(CancelRegistry, ProtocolThreeTwoSecretsAreLonger) {
  CancelRegistry reg(1, false);
  auto key = reg.add(target(1, 1, 1), 32);
  ASSERT_TRUE(key.has_value());
  EXPECT_EQ(key->secret.size(), 32u);
  EXPECT_TRUE(reg.find(key->pid, key->secret));
  auto big = reg.add(target(2, 2, 2), wire::kMaxCancelKey);
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->secret.size(), wire::kMaxCancelKey);
  EXPECT_TRUE(reg.find(big->pid, big->secret));
}

TEST(CancelRegistry, EveryWrongSecretIsNotFound) {
  CancelRegistry reg(3, false);
  auto key = reg.add(target(99, 0x11, 1), 32);
  ASSERT_TRUE(key.has_value());
  // One flipped bit at every position.
  for (std::size_t i = 0; i < key->secret.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      auto wrong = key->secret;
      wrong[i] ^= std::byte(1u << bit);
      EXPECT_FALSE(reg.find(key->pid, wrong)) << i << ":" << bit;
    }
  }
  // A prefix or an extension of the right secret is not the right secret.
  for (std::size_t n = 0; n < key->secret.size(); ++n) {
    EXPECT_FALSE(reg.find(key->pid, wire::Bytes(key->secret).first(n))) << n;
  }
  auto longer = key->secret;
  longer.push_back(std::byte{0});
  EXPECT_FALSE(reg.find(key->pid, longer));
  // The right secret under another pid.
  EXPECT_FALSE(reg.find(key->pid ^ 1, key->secret));
  EXPECT_FALSE(reg.find(0, key->secret));
  // Still there for the right pair.
  EXPECT_TRUE(reg.find(key->pid, key->secret));
}

TEST(CancelRegistry, SecretsOfDifferentSessionsDoNotCross) {
  CancelRegistry reg(3, false);
  auto a = reg.add(target(10, 0x0a, 1), 4);
  auto b = reg.add(target(20, 0x0b, 2), 4);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->secret, b->secret);  // 2^-32 chance of a false failure
  EXPECT_FALSE(reg.find(a->pid, b->secret));
  EXPECT_FALSE(reg.find(b->pid, a->secret));
  EXPECT_EQ(backend_id(*reg.find(a->pid, a->secret)), 1);
  EXPECT_EQ(backend_id(*reg.find(b->pid, b->secret)), 2);
}

TEST(CancelRegistry, RemoveForgetsTheKey) {
  CancelRegistry reg(0, false);
  auto a = reg.add(target(10, 0x0a, 1), 4);
  auto b = reg.add(target(20, 0x0b, 2), 4);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(reg.size(), 2u);
  reg.remove(*a);
  EXPECT_EQ(reg.size(), 1u);
  EXPECT_FALSE(reg.find(a->pid, a->secret));
  EXPECT_TRUE(reg.find(b->pid, b->secret));
  reg.remove(*a);  // twice: harmless
  ClientKey never;
  never.pid = 0x00abcdef;
  reg.remove(never);  // never issued: harmless
  EXPECT_EQ(reg.size(), 1u);
  reg.remove(*b);
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_FALSE(reg.find(b->pid, b->secret));
}

TEST(CancelRegistry, ClusterRoutingPutsTheInstanceInTheFirstSecretByte) {
  for (int id : {0, 1, 0x7f, 0x80, 0xfe, 0xff}) {
    CancelRegistry reg(static_cast<std::uint8_t>(id), true);
    EXPECT_EQ(reg.instance_id(), id);
    for (std::size_t length : {std::size_t{4}, std::size_t{32}}) {
      auto key = reg.add(target(4321, 1, 1), length);
      ASSERT_TRUE(key.has_value());
      EXPECT_EQ(key->pid, 4321u);
      EXPECT_EQ(std::to_integer<int>(key->secret[0]), id);
      EXPECT_EQ(reg.owner_of(key->secret), id);
    }
    const std::byte other[4] = {std::byte{0x2a}, std::byte{1}, std::byte{2}, std::byte{3}};
    EXPECT_EQ(reg.owner_of(wire::Bytes(other, 4)), 0x2a);
  }
}

// Without peers, every byte of the secret is random and every request is this instance's.
TEST(CancelRegistry, WithoutRoutingTheWholeSecretIsRandom) {
  CancelRegistry reg(5, false);
  std::set<int> first_bytes;
  for (int i = 0; i < 2000; ++i) {
    auto key = reg.add(target(77, 1, i), 4);
    ASSERT_TRUE(key.has_value());
    first_bytes.insert(std::to_integer<int>(key->secret[0]));
    EXPECT_EQ(reg.owner_of(key->secret), 5);
  }
  EXPECT_GT(first_bytes.size(), 200u);  // all 256 values are expected; 200 is far from chance
}

// Two servers may both have a process 4242: two sessions share the PID and differ in secret.
TEST(CancelRegistry, SessionsSharingAPidAreToldApartBySecret) {
  CancelRegistry reg(0, false);
  auto a = reg.add(target(4242, 0x0a, 1), 4);
  auto b = reg.add(target(4242, 0x0b, 2), 4);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->pid, b->pid);
  EXPECT_EQ(backend_id(*reg.find(4242, a->secret)), 1);
  EXPECT_EQ(backend_id(*reg.find(4242, b->secret)), 2);
  reg.remove(*a);
  EXPECT_FALSE(reg.find(4242, a->secret));
  EXPECT_EQ(backend_id(*reg.find(4242, b->secret)), 2);
}

TEST(CancelRegistry, ZeroLengthSecretIsRefused) {
  CancelRegistry reg(0, false);
  EXPECT_FALSE(reg.add(target(1, 1, 1), 0));
}

TEST(CancelRegistry, ConcurrentAddFindRemove) {
  CancelRegistry reg(9, true);
  constexpr int kThreads = 4;
  constexpr int kRounds = 2000;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<ClientKey> live;
      for (int i = 0; i < kRounds; ++i) {
        auto key = reg.add(
            target(static_cast<std::uint32_t>(i), static_cast<std::uint8_t>(t), t * kRounds + i),
            4);
        if (!key) {
          ++failures;
          continue;
        }
        auto found = reg.find(key->pid, key->secret);
        if (!found || backend_id(*found) != t * kRounds + i ||
            found->upstream_pid != static_cast<std::uint32_t>(i)) {
          ++failures;
        }
        live.push_back(std::move(*key));
        if (i % 3 == 2) {
          reg.remove(live.front());
          if (reg.find(live.front().pid, live.front().secret)) {
            ++failures;
          }
          live.erase(live.begin());
        }
      }
      for (const auto& k : live) {
        if (!reg.find(k.pid, k.secret)) {
          ++failures;
        }
        reg.remove(k);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(reg.size(), 0u);
}

}  // namespace
}  // namespace pgwarden::session
