// Fuzzes the derivation of the upstream StartupMessage (session/startup_params.h): the reading
// of `options` (pg_split_opts + PostgreSQL's getopt), the refusal of controlled settings, and
// build_upstream_startup over any StartupMessage the wire decoder accepts.
//
// Input: byte 0 bit 0 selects the mode; the rest is either an `options` value (mode 0) or
// the body of a startup packet (mode 1: protocol version, then name/value pairs).
//
// Properties checked (trap on violation), against a reference getopt written here in glibc's
// style (argv permuted, "--" ends the switches, unknown letter or missing argument = error):
//   - options: parse_options accepts only what the reference accepts, with the same switches
//     (letter and argument); its output, joined and read again by the reference, gives the
//     same switches; strip_own_options fails when parse_options does, and with 42501 whenever
//     the reference finds a controlled setting (any case, '-' for '_') among switches
//     parse_options accepts; otherwise the reference reads its output as the input's
//     switches less pgwarden.preset, stripping again changes nothing, and own_settings holds
//     at most pgwarden.preset;
//   - startup: user and database come first with the values given and appear nowhere else;
//     no "_pq_.", "replication" or controlled parameter is forwarded (a controlled one is a
//     42501 error); every other client parameter is forwarded in order ("options" only if
//     something is left); the minor is min(client, 2); the result encodes to a
//     StartupMessage that decodes back to the same.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
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

// PostgreSQL's pg_split_opts: whitespace separates, a backslash makes the next byte literal,
// a trailing backslash is dropped.
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
    bool escape = false;
    for (; i < s.size(); ++i) {
      if (std::isspace(static_cast<unsigned char>(s[i])) && !escape) {
        break;
      }
      if (!escape && s[i] == '\\') {
        escape = true;
      } else {
        escape = false;
        token.push_back(s[i]);
      }
    }
    out.push_back(std::move(token));
  }
  return out;
}

struct RefSwitch {
  char letter;
  std::string arg;
  bool operator==(const RefSwitch&) const = default;
};

std::optional<std::vector<RefSwitch>> reference_getopt(const std::vector<std::string>& argv) {
  constexpr std::string_view kSpec = "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:";
  std::vector<RefSwitch> out;
  bool leftover = false;
  std::size_t optind = 0;
  std::string_view nextchar;
  for (;;) {
    if (nextchar.empty()) {
      while (optind < argv.size() && (argv[optind].size() < 2 || argv[optind][0] != '-')) {
        leftover = true;
        ++optind;
      }
      if (optind < argv.size() && argv[optind] == "--") {
        ++optind;
        leftover = leftover || optind < argv.size();
        break;
      }
      if (optind == argv.size()) {
        break;
      }
      nextchar = std::string_view(argv[optind]).substr(1);
      ++optind;
    }
    const char c = nextchar.front();
    nextchar.remove_prefix(1);
    const auto at = kSpec.find(c);
    if (at == std::string_view::npos || c == ':') {
      return std::nullopt;
    }
    if (at + 1 < kSpec.size() && kSpec[at + 1] == ':') {
      if (!nextchar.empty()) {
        out.push_back({c, std::string(nextchar)});
        nextchar = {};
      } else if (optind < argv.size()) {
        out.push_back({c, argv[optind++]});
      } else {
        return std::nullopt;
      }
    } else {
      out.push_back({c, ""});
    }
  }
  if (leftover) {
    return std::nullopt;
  }
  return out;
}

// The setting name a -c / -- switch sets, as PostgreSQL looks it up (nullopt: none).
std::optional<std::string> ref_setting(const RefSwitch& s) {
  if (s.letter != 'c' && s.letter != '-') {
    return std::nullopt;
  }
  const auto eq = s.arg.find('=');
  if (eq == std::string::npos) {
    return std::nullopt;
  }
  std::string name = s.arg.substr(0, eq);
  for (char& c : name) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c + 32);
    } else if (c == '-') {
      c = '_';
    }
  }
  return name;
}

bool ref_controlled(std::string_view name) {
  return name == "default_transaction_read_only" || name == "transaction_read_only" ||
         name == "role" || name == "session_authorization" ||
         (name.starts_with("pgwarden.") && name != "pgwarden.preset");
}

bool is_preset(const RefSwitch& s) {
  auto name = ref_setting(s);
  return name && *name == "pgwarden.preset";
}

void fuzz_options(std::string_view options) {
  const auto ref = reference_getopt(pg_split_opts(options));
  auto parsed = session::parse_options(options);
  if (parsed) {
    check(ref.has_value());
    check(ref->size() == parsed->size());
    for (std::size_t i = 0; i < ref->size(); ++i) {
      check((*ref)[i].letter == (*parsed)[i].letter && (*ref)[i].arg == (*parsed)[i].argument);
    }
    check(reference_getopt(pg_split_opts(session::join_options(*parsed))) == ref);
  } else {
    check(parsed.error().sqlstate == session::kSqlstateInvalidParameterValue);
  }

  std::map<std::string, std::string> own;
  auto out = session::strip_own_options(options, own);
  if (!parsed) {
    // The same error, unless a controlled setting came first.
    check(!out && (out.error() == parsed.error() ||
                   out.error().sqlstate == session::kSqlstateInsufficientPrivilege));
    return;
  }
  const bool controlled = std::ranges::any_of(*ref, [](const RefSwitch& s) {
    auto name = ref_setting(s);
    return name && ref_controlled(*name);
  });
  if (controlled) {
    check(!out && out.error().sqlstate == session::kSqlstateInsufficientPrivilege);
    return;
  }
  check(out.has_value());
  check(own.empty() || (own.size() == 1 && own.begin()->first == session::kPresetSetting));
  auto expected = *ref;
  std::erase_if(expected, is_preset);
  check(reference_getopt(pg_split_opts(*out)) == expected);
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

  // The client's forwardable parameters, in order, and whether one is controlled.
  std::vector<std::string_view> expected_names;
  std::size_t protocol_options = 0;
  bool replication = false;
  bool controlled = false;
  for (const auto& p : client->parameters) {
    if (p.is_protocol_option()) {
      ++protocol_options;
    } else if (p.name == "replication") {
      replication = true;
    } else if (p.name != "user" && p.name != "database" && p.name != "options") {
      const auto name = session::canonical_setting_name(p.name);
      controlled = controlled || ref_controlled(name);
      if (name != session::kPresetSetting) {
        expected_names.push_back(p.name);
      }
    } else if (p.name == "options") {
      expected_names.push_back(p.name);
    }
  }
  if (!up) {
    check(!up.error().message.empty());
    check(up.error().sqlstate == session::kSqlstateInsufficientPrivilege ||
          up.error().sqlstate == session::kSqlstateInvalidParameterValue);
    return;
  }
  check(!controlled);
  const auto& params = up->parameters;
  check(params.size() >= 2);
  check(params[0].first == "user" && params[0].second == "upstream_user");
  check(params[1].first == "database" && params[1].second == "upstream_db");
  check(up->minor == std::min<std::uint16_t>(client->minor, 2));
  check(up->own_settings.empty() || (up->own_settings.size() == 1 &&
                                     up->own_settings.begin()->first == session::kPresetSetting));
  check(up->unrecognized_options.size() == protocol_options);
  check(up->replication == replication);
  std::size_t k = 0;
  for (std::size_t i = 2; i < params.size(); ++i) {
    const auto& [name, value] = params[i];
    check(name != "user" && name != "database" && name != "replication");
    check(!name.starts_with(wire::kProtocolOptionPrefix));
    const auto canonical = session::canonical_setting_name(name);
    check(!ref_controlled(canonical) && canonical != session::kPresetSetting);
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
