// The users file of SCRAM authentication: one user per line,
//   "name" "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
// (PgBouncer's auth_file layout restricted to PostgreSQL SCRAM verifiers; a double quote
// inside a quoted field is written twice). Blank lines and lines whose first non-blank
// character is '#' are ignored. Plaintext and MD5 passwords are refused: a stolen users file
// must not be replayable. Parsing is pure (text in, entries and diagnostics out) and never
// throws; every problem is reported with the users file's own line number.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "config/diagnostic.h"
#include "crypto/scram.h"

namespace pgwarden::config {

// Larger users files are refused before reading (the whole file is held in memory).
inline constexpr std::size_t kMaxUsersFileBytes = 16 * 1024 * 1024;
// A startup `user` longer than NAMEDATALEN - 1 bytes could never match an entry.
inline constexpr std::size_t kMaxUserNameBytes = 63;

struct UserEntry {
  crypto::ScramVerifier verifier;
  std::uint32_t line = 0;
};

// What SCRAM shows a user the file does not define (crypto::mock_scram_verifier), chosen so
// that nothing tells an unknown user from a known one: the iteration count and salt length
// its real verifiers use most, and a salt keyed by the file's own bytes, so that an unknown
// user's salt stays the same across restarts and reloads, as a real user's does. Residual
// leak: when the file's bytes change, every unknown user's salt changes with them.
struct MockScram {
  MockScram() = default;
  MockScram(const MockScram&) = default;
  MockScram& operator=(const MockScram&) = default;
  ~MockScram();

  // HMAC-SHA-256 under a fixed label over the file's bytes. As secret as the file itself:
  // whoever knows it can predict unknown users' salts and so enumerate the known ones.
  crypto::ScramKey key{};
  // Most common among the file's verifiers (ties: the larger); the defaults when it has none.
  std::uint32_t iterations = crypto::kDefaultScramIterations;
  std::size_t salt_length = crypto::kScramSaltLength;
};

struct UsersFile {
  std::map<std::string, UserEntry, std::less<>> users;
  MockScram mock;

  const UserEntry* find(std::string_view name) const;
};

// Parses the text of a users file. `display_name` is used in diagnostics. Errors are
// appended to `errors`; the entries parsed without error are returned either way.
UsersFile parse_users_file(std::string_view text, const std::string& display_name,
                           Diagnostics& errors);

// Quotes a field for a users file line: wraps it in double quotes and doubles any quote.
std::string quote_users_file_field(std::string_view field);

}  // namespace pgwarden::config
