// Fuzzes the derivation of the upstream StartupMessage (session/startup_params.h): the
// `options` splitter that removes pgwarden's own switches, and build_upstream_startup over
// any StartupMessage the wire decoder accepts.
//
// Input: byte 0 bit 0 selects the mode; the rest is either an `options` value (mode 0) or
// the body of a startup packet (mode 1: protocol version, then name/value pairs).
//
// Properties checked (trap on violation):
//   - options: the output, split as PostgreSQL splits it (pg_split_opts), is a subsequence of
//     the input's tokens (nothing invented, order kept) in which no -c/-- switch names a
//     pgwarden setting; stripping it again changes nothing and finds no pgwarden setting
//     (none survives, whatever the escaping); own setting names are lower-case "pgwarden."
//     plus at least one character;
//   - startup: user and database come first with the values given and appear nowhere else;
//     no "_pq_.", "replication" or "pgwarden." parameter is forwarded; every other client
//     parameter is forwarded in order ("options" only if something is left); the minor is
//     min(client, 2); the result encodes to a StartupMessage that decodes back to the same.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "session/startup_params.h"
#include "wire/bytes.h"
#include "wire/startup.h"

using namespace pgwarden;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// PostgreSQL's pg_split_opts: whitespace separates, a backslash makes the next byte literal.
std::vector<std::string> pg_split_opts(std::string_view s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    }
    if (i == s.size()) {
      break;
    }
    std::string token;
    while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) {
      if (s[i] == '\\' && i + 1 < s.size()) {
        ++i;
      }
      token.push_back(s[i++]);
    }
    out.push_back(std::move(token));
  }
  return out;
}

bool is_subsequence(const std::vector<std::string>& sub, const std::vector<std::string>& of) {
  std::size_t j = 0;
  for (const auto& t : of) {
    if (j < sub.size() && sub[j] == t) {
      ++j;
    }
  }
  return j == sub.size();
}

bool starts_with_own(std::string_view name) {
  if (name.size() < session::kOwnSettingPrefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < session::kOwnSettingPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(name[i])) != session::kOwnSettingPrefix[i]) {
      return false;
    }
  }
  return true;
}

void check_own_names(const std::map<std::string, std::string>& own) {
  for (const auto& [name, value] : own) {
    check(name.size() > session::kOwnSettingPrefix.size());
    check(name.starts_with(session::kOwnSettingPrefix));
    check(std::none_of(name.begin(), name.end(),
                       [](unsigned char c) { return std::isupper(c) != 0; }));
  }
}

void fuzz_options(std::string_view options) {
  std::map<std::string, std::string> own;
  auto out = session::strip_own_options(options, own);
  if (!out) {
    check(!out.error().empty());
    return;
  }
  check_own_names(own);
  const auto tokens = pg_split_opts(*out);
  check(is_subsequence(tokens, pg_split_opts(options)));
  // No switch the server would apply names a pgwarden setting ("-c" takes the next token as
  // its argument, whatever it is, as getopt does).
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    std::string_view t = tokens[i];
    if (t == "-c") {
      check(i + 1 < tokens.size() && !starts_with_own(tokens[i + 1]));
      ++i;
    } else if (t.starts_with("-c") || t.starts_with("--")) {
      check(!starts_with_own(t.substr(2)));
    }
  }
  std::map<std::string, std::string> again;
  auto twice = session::strip_own_options(*out, again);
  check(twice.has_value() && *twice == *out && again.empty());
}

void fuzz_startup(wire::Bytes body) {
  auto client = wire::parse_startup_message(body);
  if (!client) {
    return;
  }
  auto up = session::build_upstream_startup(*client, "upstream_user", "upstream_db");
  if (!up) {
    return;
  }
  const auto& params = up->parameters;
  check(params.size() >= 2);
  check(params[0].first == "user" && params[0].second == "upstream_user");
  check(params[1].first == "database" && params[1].second == "upstream_db");
  check(up->minor == std::min<std::uint16_t>(client->minor, 2));
  check_own_names(up->own_settings);

  // The client's forwardable parameters, in order.
  std::vector<std::string_view> expected_names;
  std::size_t protocol_options = 0;
  bool replication = false;
  for (const auto& p : client->parameters) {
    if (p.is_protocol_option()) {
      ++protocol_options;
    } else if (p.name == "replication") {
      replication = true;
    } else if (p.name != "user" && p.name != "database" && !starts_with_own(p.name)) {
      expected_names.push_back(p.name);
    }
  }
  check(up->unrecognized_options.size() == protocol_options);
  check(up->replication == replication);
  std::size_t k = 0;
  for (std::size_t i = 2; i < params.size(); ++i) {
    const auto& [name, value] = params[i];
    check(name != "user" && name != "database" && name != "replication");
    check(!name.starts_with(wire::kProtocolOptionPrefix) && !starts_with_own(name));
    // Skip an "options" the stripping emptied.
    while (k < expected_names.size() && expected_names[k] != name) {
      check(expected_names[k] == "options");
      ++k;
    }
    check(k < expected_names.size());
    if (name == "options") {
      check(!value.empty());
      std::map<std::string, std::string> own;
      auto again = session::strip_own_options(value, own);
      check(again.has_value() && *again == value && own.empty());
    } else {
      check(client->find(name) == value);
    }
    ++k;
  }
  check(k == expected_names.size() ||
        (k + 1 == expected_names.size() && expected_names[k] == "options"));

  // What is sent upstream is a well-formed StartupMessage with exactly these parameters.
  wire::StartupMessage m;
  m.minor = up->minor;
  for (const auto& [name, value] : params) {
    m.parameters.push_back({name, value});
  }
  wire::ByteVector bytes;
  wire::encode(m, bytes);
  // (user and database may come on top of the client's parameter count: no limit here)
  auto decoded = wire::parse_startup_message(wire::Bytes(bytes).subspan(4), params.size());
  check(decoded.has_value() && *decoded == m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const wire::Bytes rest(reinterpret_cast<const std::byte*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    fuzz_options(wire::as_chars(rest));
  } else {
    fuzz_startup(rest);
  }
  return 0;
}
