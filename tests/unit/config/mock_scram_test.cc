// Mock SCRAM verifiers for users the users file does not define: shaped like the file's real
// verifiers (iteration count, salt length) and keyed by the file's bytes, so that neither a
// server-first message nor a restart tells an unknown user from a known one.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "config/users_file.h"
#include "crypto/base64.h"
#include "crypto/scram.h"
#include "crypto/scram_server.h"
#include "wire/bytes.h"

namespace pgwarden::config {
namespace {

// A users-file line with a given iteration count and salt length. PBKDF2 is not run: the
// keys are fixed bytes, which is all parsing and the mock derivation look at.
std::string line(std::string_view name, std::uint32_t iterations, std::size_t salt_length,
                 std::uint8_t fill = 1) {
  const std::vector<std::byte> salt(salt_length, std::byte{fill});
  const std::vector<std::byte> key(crypto::kScramKeyLength, std::byte{fill});
  return quote_users_file_field(name) + " \"SCRAM-SHA-256$" + std::to_string(iterations) + ":" +
         crypto::base64_encode(salt) + "$" + crypto::base64_encode(key) + ":" +
         crypto::base64_encode(key) + "\"\n";
}

UsersFile parse(const std::string& text) {
  Diagnostics errors;
  auto f = parse_users_file(text, "users.txt", errors);
  EXPECT_TRUE(errors.empty());
  return f;
}

crypto::ScramVerifier mock_for(const UsersFile& f, std::string_view user) {
  auto v = crypto::mock_scram_verifier(f.mock.key, user, f.mock.iterations, f.mock.salt_length);
  EXPECT_TRUE(v.has_value());
  return *v;
}

// The value of attribute `name` ("s=", "i=") in a SCRAM message.
std::string attribute(std::string_view msg, std::string_view name) {
  std::size_t pos = 0;
  while (pos < msg.size()) {
    auto end = msg.find(',', pos);
    if (end == std::string_view::npos) {
      end = msg.size();
    }
    const auto part = msg.substr(pos, end - pos);
    if (part.starts_with(name)) {
      return std::string(part.substr(name.size()));
    }
    pos = end + 1;
  }
  return {};
}

TEST(MockScram, IterationCountIsTheFilesMostCommon) {
  EXPECT_EQ(
      parse(line("a", 10000, 16) + line("b", 10000, 16) + line("c", 4096, 16)).mock.iterations,
      10000u);
  // A tie goes to the larger count.
  EXPECT_EQ(parse(line("a", 8192, 16) + line("b", 4096, 16)).mock.iterations, 8192u);
  EXPECT_EQ(parse(line("a", 4096, 16) + line("b", 8192, 16)).mock.iterations, 8192u);
  // No users: PostgreSQL's default.
  EXPECT_EQ(parse("# nobody yet\n").mock.iterations, crypto::kDefaultScramIterations);
  EXPECT_EQ(parse("").mock.iterations, crypto::kDefaultScramIterations);
}

TEST(MockScram, SaltLengthIsTheFilesMostCommon) {
  EXPECT_EQ(parse(line("a", 4096, 24) + line("b", 4096, 24) + line("c", 4096, 16)).mock.salt_length,
            24u);
  EXPECT_EQ(parse(line("a", 4096, 16) + line("b", 4096, 40)).mock.salt_length, 40u);
  EXPECT_EQ(parse("").mock.salt_length, crypto::kScramSaltLength);
  const auto f = parse(line("a", 4096, 40) + line("b", 4096, 40));
  EXPECT_EQ(mock_for(f, "ghost").salt.size(), 40u);
  const auto g = parse(line("a", 4096, 16));
  EXPECT_EQ(mock_for(g, "ghost").salt.size(), 16u);
}

TEST(MockScram, SaltIsStableAcrossLoadsAndDiffersBetweenUsers) {
  const std::string text = line("alice", 4096, 16, 1) + line("bob", 4096, 16, 2);
  // Two parses of the same bytes stand for a restart or a reload without a change.
  const auto first = parse(text);
  const auto second = parse(text);
  EXPECT_EQ(mock_for(first, "ghost").salt, mock_for(second, "ghost").salt);
  EXPECT_NE(mock_for(first, "ghost").salt, mock_for(first, "phantom").salt);
  EXPECT_EQ(mock_for(first, "ghost").salt.size(), crypto::kScramSaltLength);
  // The documented residual leak: other bytes, other mock salts.
  const auto changed = parse(text + "# a comment\n");
  EXPECT_NE(mock_for(changed, "ghost").salt, mock_for(first, "ghost").salt);
}

TEST(MockScram, UnknownUserExchangeShowsTheFilesShape) {
  const auto f =
      parse(line("alice", 15000, 24, 1) + line("bob", 15000, 24, 2) + line("carol", 4096, 16, 3));
  crypto::ScramServerOptions options;
  options.mock_iterations = f.mock.iterations;
  options.mock_salt_length = f.mock.salt_length;
  options.nonce_for_testing = "servernonce";
  crypto::ScramServer server(std::nullopt, "ghost", f.mock.key, options);
  ASSERT_TRUE(server.is_mock());
  const std::string client_first = "n,,n=,r=clientnonce";
  const auto reply = server.on_client_first(crypto::kScramSha256, wire::as_bytes(client_first));
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(attribute(reply->data, "i="), "15000");
  const auto salt = crypto::base64_decode(attribute(reply->data, "s="));
  ASSERT_TRUE(salt.has_value());
  EXPECT_EQ(salt->size(), 24u);
  EXPECT_EQ(*salt, mock_for(f, "ghost").salt);

  // A known user's exchange shows its own verifier's values, in the same shape.
  crypto::ScramServer known(f.find("alice")->verifier, "alice", f.mock.key, options);
  const auto known_reply =
      known.on_client_first(crypto::kScramSha256, wire::as_bytes(client_first));
  ASSERT_TRUE(known_reply.has_value());
  EXPECT_EQ(attribute(known_reply->data, "i="), "15000");
  EXPECT_EQ(crypto::base64_decode(attribute(known_reply->data, "s="))->size(), 24u);
}

TEST(MockScram, ExchangeFailsClosedWithoutAKey) {
  // A listener without a parsed users file has no key: the exchange must not run on a
  // predictable one.
  crypto::ScramServer server(std::nullopt, "ghost", {}, {});
  const std::string client_first = "n,,n=,r=clientnonce";
  const auto reply = server.on_client_first(crypto::kScramSha256, wire::as_bytes(client_first));
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error(), crypto::CryptoError::ExchangeFailed);
}

}  // namespace
}  // namespace pgwarden::config
