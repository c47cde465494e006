#include "crypto/md5.h"

#include <gtest/gtest.h>

#include <array>

namespace pgwarden::crypto {
namespace {

// Values read back from PostgreSQL 15 (password_encryption = 'md5'):
//   CREATE ROLE m_user PASSWORD 'password'  -> md5cd9d88996c367caae18d642558831bca
//   CREATE ROLE bar PASSWORD 'foo'          -> md53858f62230ac3c915f300c664312c63f
TEST(Md5, StoredHashMatchesPostgreSql) {
  EXPECT_EQ(md5_password_hash("m_user", "password"), "md5cd9d88996c367caae18d642558831bca");
  EXPECT_EQ(md5_password_hash("bar", "foo"), "md53858f62230ac3c915f300c664312c63f");
  // MD5("foobar") = 3858f62230ac3c915f300c664312c63f: password comes first, then the user.
  EXPECT_NE(md5_password_hash("foo", "bar"), "md53858f62230ac3c915f300c664312c63f");
}

TEST(Md5, AuthResponse) {
  const std::array<std::byte, 4> salt = {std::byte{0x01}, std::byte{0x02}, std::byte{0x03},
                                         std::byte{0x04}};
  // md5(hex(md5("foobar")) || 01 02 03 04), computed independently:
  //   printf '3858f62230ac3c915f300c664312c63f\x01\x02\x03\x04' | md5sum
  std::string expected = "md5" + std::string("6e4f0b50f7277feb74acbf2a7734c9cb");
  auto from_password = md5_auth_response("foo", "bar", salt);
  auto from_hash = md5_auth_response("md53858f62230ac3c915f300c664312c63f", "bar", salt);
  EXPECT_EQ(from_password.size(), kMd5HashLength);
  EXPECT_EQ(from_password, from_hash);
  EXPECT_EQ(from_password, expected);
  // A different salt gives a different response (no replay across connections).
  const std::array<std::byte, 4> salt2 = {std::byte{0x01}, std::byte{0x02}, std::byte{0x03},
                                          std::byte{0x05}};
  EXPECT_NE(md5_auth_response("foo", "bar", salt2), from_password);
}

TEST(Md5, HashDetection) {
  EXPECT_TRUE(is_md5_hash("md53858f62230ac3c915f300c664312c63f"));
  EXPECT_FALSE(is_md5_hash("md53858F62230AC3C915F300C664312C63F"));  // uppercase
  EXPECT_FALSE(is_md5_hash("md53858f62230ac3c915f300c664312c63"));   // short
  EXPECT_FALSE(is_md5_hash("md53858f62230ac3c915f300c664312c63f0"));
  EXPECT_FALSE(is_md5_hash("MD53858f62230ac3c915f300c664312c63f"));
  EXPECT_FALSE(is_md5_hash("md53858f62230ac3c915f300c664312c63g"));
  EXPECT_FALSE(is_md5_hash(""));
}

}  // namespace
}  // namespace pgwarden::crypto
