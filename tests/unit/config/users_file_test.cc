// The users file: format, SCRAM-only, duplicates, and line numbers in every error.
#include <gtest/gtest.h>

#include "config/users_file.h"
#include "crypto/scram.h"

namespace pgwarden::config {
namespace {

std::string verifier(std::string_view password) {
  return crypto::make_scram_verifier(password, 4096).value().to_string();
}

TEST(UsersFile, ParsesEntriesCommentsAndBlankLines) {
  const std::string v1 = verifier("one");
  const std::string v2 = verifier("two");
  const std::string text =
      "# users\n\n\"alice\" \"" + v1 + "\"\r\n   \t\n  \"we\"\"ird\"\t\"" + v2 + "\"  \n# end";
  Diagnostics errors;
  const auto f = parse_users_file(text, "users.txt", errors);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(f.users.size(), 2u);
  ASSERT_NE(f.find("alice"), nullptr);
  EXPECT_EQ(f.find("alice")->line, 3u);
  EXPECT_EQ(f.find("alice")->verifier.to_string(), v1);
  ASSERT_NE(f.find("we\"ird"), nullptr);
  EXPECT_EQ(f.find("we\"ird")->line, 5u);
  EXPECT_EQ(f.find("bob"), nullptr);
}

TEST(UsersFile, EveryBadLineIsReportedWithItsLine) {
  const std::string v = verifier("pw");
  const std::string text = "\"ok\" \"" + v +
                           "\"\n"  // 1 ok
                           "alice " +
                           v +
                           "\n"                                               // 2 unquoted
                           "\"bob\" \"md5abcdef0123456789abcdef01234567\"\n"  // 3 md5
                           "\"carol\" \"plaintext\"\n"                        // 4 plaintext
                           "\"dave\" \"SCRAM-SHA-256$0:AAAA$AAAA:AAAA\"\n"    // 5 bad verifier
                           "\"ok\" \"" +
                           v +
                           "\"\n"       // 6 duplicate
                           "\"eve\"\n"  // 7 missing verifier
                           "\"frank\" \"" +
                           v +
                           "\" extra\n"              // 8 trailing text
                           "\"unterminated \"x\"\n"  // 9 x is outside quotes -> format error
                           "\"\" \"" +
                           v +
                           "\"\n"  // 10 empty name
                           "\"" +
                           std::string(64, 'n') + "\" \"" + v +
                           "\"\n"  // 11 too long
                           "\"g\"\"" +
                           v +
                           "\"\n"  // 12 no gap -> one field g"SCRAM...
                           "\"tab\\x\" \"" +
                           v + "\"";  // 13 ok: backslash is literal, no newline
  Diagnostics errors;
  const auto f = parse_users_file(text, "u.txt", errors);
  std::vector<std::uint32_t> lines;
  for (const auto& e : errors) {
    EXPECT_EQ(e.file, "u.txt");
    lines.push_back(e.line);
    // The verifier text (a password equivalent for offline guessing) is never echoed.
    EXPECT_EQ(e.message.find(v), std::string::npos);
  }
  EXPECT_EQ(lines, (std::vector<std::uint32_t>{2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  EXPECT_EQ(f.users.size(), 2u);
  EXPECT_NE(f.find("tab\\x"), nullptr);
}

TEST(UsersFile, QuoteRoundTrips) {
  EXPECT_EQ(quote_users_file_field("a\"b"), "\"a\"\"b\"");
  const std::string v = verifier("pw");
  const std::string line =
      quote_users_file_field("x\"y\"") + " " + quote_users_file_field(v) + "\n";
  Diagnostics errors;
  const auto f = parse_users_file(line, "u", errors);
  EXPECT_TRUE(errors.empty());
  EXPECT_NE(f.find("x\"y\""), nullptr);
}

TEST(UsersFile, ArbitraryBytesNeverCrash) {
  std::string junk;
  for (int i = 0; i < 4096; ++i) {
    junk.push_back(static_cast<char>((i * 131 + 7) % 256));
  }
  Diagnostics errors;
  (void)parse_users_file(junk, "junk", errors);
  EXPECT_FALSE(errors.empty());
}

}  // namespace
}  // namespace pgwarden::config
