// Secret: value semantics, constant-time comparison, and that moved-from holders are empty.
#include <gtest/gtest.h>

#include "config/secret.h"

namespace pgwarden::config {
namespace {

TEST(Secret, HoldsAndComparesValue) {
  const Secret s(std::string("hunter2-but-longer-than-sso-buffer"));
  EXPECT_EQ(s.reveal(), "hunter2-but-longer-than-sso-buffer");
  EXPECT_TRUE(s.equals("hunter2-but-longer-than-sso-buffer"));
  EXPECT_FALSE(s.equals("hunter2-but-longer-than-sso-buffeR"));
  EXPECT_FALSE(s.equals("hunter2"));
  EXPECT_FALSE(s.equals(""));
  EXPECT_TRUE(Secret().equals(""));
  EXPECT_TRUE(Secret().empty());
}

TEST(Secret, CopiesAreIndependentAndMovesEmptyTheSource) {
  Secret a(std::string("short"));
  Secret b = a;
  EXPECT_EQ(b.reveal(), "short");
  Secret c = std::move(a);
  EXPECT_EQ(c.reveal(), "short");
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): the wipe is the point
  Secret d(std::string(100, 'x'));
  d = b;
  EXPECT_EQ(d.reveal(), "short");
  d = Secret(std::string(50, 'y'));
  EXPECT_EQ(d.size(), 50u);
  Secret& self = d;
  d = self;
  EXPECT_EQ(d.size(), 50u);
}

}  // namespace
}  // namespace pgwarden::config
