#include "crypto/base64.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crypto/random.h"

namespace pgwarden::crypto {
namespace {

std::vector<std::byte> bytes(std::string_view s) {
  std::vector<std::byte> out;
  for (char c : s) {
    out.push_back(static_cast<std::byte>(c));
  }
  return out;
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : cases) {
    EXPECT_EQ(base64_encode(bytes(plain)), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(*decoded, bytes(plain));
    EXPECT_EQ(base64_encoded_size(plain.size()), encoded.size());
  }
}

TEST(Base64, BinaryRoundTripAllLengths) {
  for (std::size_t n = 0; n < 200; ++n) {
    std::vector<std::byte> data(n);
    ASSERT_TRUE(random_bytes(data));
    auto text = base64_encode(data);
    EXPECT_EQ(text.size(), base64_encoded_size(n));
    auto back = base64_decode(text);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, data);
  }
}

TEST(Base64, AllByteValues) {
  std::vector<std::byte> data;
  for (int i = 0; i < 256; ++i) {
    data.push_back(static_cast<std::byte>(i));
  }
  auto back = base64_decode(base64_encode(data));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, data);
}

TEST(Base64, RejectsMalformed) {
  const std::string_view bad[] = {
      "Zg",                          // length not a multiple of 4
      "Zg=",                         // same
      "Zm9vY",                       // same
      "Zg==Zg==",                    // padding in the middle
      "Z===",                        // three padding characters
      "====",                        // padding only
      "=Zg=",                        // padding first
      "Zm9v\n",                      // line break
      "Zm9 v",                       // space
      " Zm9v",                       // leading space
      "Zm9v ",                       // trailing space
      "Zm-v",                        // URL-safe alphabet
      "Zm_v",                        // URL-safe alphabet
      "Zm9\x80",                     // high byte
      std::string_view("Zm9\0", 4),  // NUL
      "Zh==",                        // non-canonical: unused bits set (decodes like "Zg==")
  };
  for (auto s : bad) {
    EXPECT_FALSE(base64_decode(s).has_value()) << s;
  }
}

TEST(Base64, RejectsNonCanonicalPaddingBits) {
  // "Zg==" is canonical for 0x66; "Zh==", "Zi==", ... "Zv==" differ only in unused bits.
  EXPECT_TRUE(base64_decode("Zg==").has_value());
  for (char c : std::string_view("hijklmnopqrstuv")) {
    std::string s = "Z";
    s += c;
    s += "==";
    EXPECT_FALSE(base64_decode(s).has_value()) << s;
  }
  // One padding character: the last symbol's low two bits must be zero.
  EXPECT_TRUE(base64_decode("Zm8=").has_value());
  EXPECT_FALSE(base64_decode("Zm9=").has_value());
  EXPECT_FALSE(base64_decode("Zm+=").has_value());
}

}  // namespace
}  // namespace pgwarden::crypto
