#include "config/users_file.h"

#include <openssl/crypto.h>

#include <optional>
#include <span>

namespace pgwarden::config {
namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// Reads one double-quoted field starting at s[i] == '"'; a quote inside is written twice.
// Advances i past the closing quote. nullopt when the closing quote is missing.
std::optional<std::string> read_quoted(std::string_view s, std::size_t& i) {
  std::string out;
  ++i;  // opening quote
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"') {
      if (i + 1 < s.size() && s[i + 1] == '"') {
        out.push_back('"');
        i += 2;
        continue;
      }
      ++i;
      return out;
    }
    out.push_back(c);
    ++i;
  }
  return std::nullopt;
}

void skip_blanks(std::string_view s, std::size_t& i) {
  while (i < s.size() && is_blank(s[i])) {
    ++i;
  }
}

// The most common value in `counts` (value -> occurrences); ties go to the larger value.
template <typename T>
T most_common(const std::map<T, std::size_t>& counts, T fallback) {
  T best = fallback;
  std::size_t best_count = 0;
  for (const auto& [value, count] : counts) {  // ascending, so >= prefers the larger
    if (count >= best_count) {
      best = value;
      best_count = count;
    }
  }
  return best;
}

}  // namespace

MockScram::~MockScram() {
  OPENSSL_cleanse(key.data(), key.size());
}

const UserEntry* UsersFile::find(std::string_view name) const {
  const auto it = users.find(name);
  return it == users.end() ? nullptr : &it->second;
}

std::string quote_users_file_field(std::string_view field) {
  std::string out = "\"";
  for (const char c : field) {
    if (c == '"') {
      out += "\"\"";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

UsersFile parse_users_file(std::string_view text, const std::string& display_name,
                           Diagnostics& errors) {
  UsersFile file;
  const auto fail = [&](std::uint32_t line, std::string message) {
    errors.push_back(Diagnostic{display_name, line, std::move(message)});
  };
  std::uint32_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++line_no;
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.ends_with('\r')) {
      line.remove_suffix(1);
    }
    std::size_t i = 0;
    skip_blanks(line, i);
    if (i == line.size() || line[i] == '#') {
      continue;
    }
    static constexpr std::string_view kFormat =
        "expected \"name\" \"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\"";
    if (line[i] != '"') {
      fail(line_no, std::string(kFormat));
      continue;
    }
    auto name = read_quoted(line, i);
    if (!name) {
      fail(line_no, "user name is missing its closing quote");
      continue;
    }
    const std::size_t before_gap = i;
    skip_blanks(line, i);
    if (i == line.size()) {
      fail(line_no, "missing the password verifier; " + std::string(kFormat));
      continue;
    }
    if (i == before_gap || line[i] != '"') {
      fail(line_no, std::string(kFormat));
      continue;
    }
    auto secret = read_quoted(line, i);
    if (!secret) {
      fail(line_no, "password verifier is missing its closing quote");
      continue;
    }
    skip_blanks(line, i);
    if (i != line.size()) {
      fail(line_no, "unexpected text after the password verifier");
      continue;
    }
    bool name_ok = true;
    if (name->empty() || name->size() > kMaxUserNameBytes) {
      fail(line_no, "user name must be 1.." + std::to_string(kMaxUserNameBytes) + " bytes");
      name_ok = false;
    } else {
      for (const char c : *name) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
          fail(line_no, "user name contains a control character");
          name_ok = false;
          break;
        }
      }
    }
    // Only SCRAM verifiers: a plaintext or MD5 entry would let whoever reads the file log in
    // (MD5 hashes are password-equivalent in PostgreSQL's protocol).
    if (!secret->starts_with("SCRAM-SHA-256$")) {
      if (secret->starts_with("md5")) {
        fail(line_no,
             "MD5 password hashes are not accepted; use a SCRAM-SHA-256 verifier "
             "(pgwarden hash-password)");
      } else {
        fail(line_no,
             "plaintext passwords are not accepted; use a SCRAM-SHA-256 verifier "
             "(pgwarden hash-password)");
      }
      continue;
    }
    auto verifier = crypto::parse_scram_verifier(*secret);
    if (!verifier) {
      fail(line_no,
           "invalid SCRAM-SHA-256 verifier: " + std::string(crypto::to_string(verifier.error())));
      continue;
    }
    if (!name_ok) {
      continue;
    }
    if (const auto* prev = file.find(*name)) {
      fail(line_no,
           "user \"" + *name + "\" is already defined on line " + std::to_string(prev->line));
      continue;
    }
    file.users.emplace(std::move(*name), UserEntry{std::move(*verifier), line_no});
  }

  std::map<std::uint32_t, std::size_t> iterations;
  std::map<std::size_t, std::size_t> salt_lengths;
  for (const auto& [name, entry] : file.users) {
    ++iterations[entry.verifier.iterations];
    ++salt_lengths[entry.verifier.salt.size()];
  }
  file.mock.iterations = most_common(iterations, crypto::kDefaultScramIterations);
  file.mock.salt_length = most_common(salt_lengths, crypto::kScramSaltLength);
  // The label separates this use of the file's bytes from any other; HMAC under a public key
  // is used as a domain-separated hash, without copying the file.
  static constexpr std::string_view kMockKeyLabel = "pgwarden users-file mock key v1";
  auto key =
      crypto::hmac_sha256(std::as_bytes(std::span(kMockKeyLabel)), std::as_bytes(std::span(text)));
  if (!key) {
    // An all-zero key would make unknown users' salts predictable: refuse the file instead.
    fail(0, "cannot derive the mock SCRAM key: " + std::string(crypto::to_string(key.error())));
  } else {
    file.mock.key = *key;
    OPENSSL_cleanse(key->data(), key->size());
  }
  return file;
}

}  // namespace pgwarden::config
