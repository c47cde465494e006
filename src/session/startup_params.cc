#include "session/startup_params.h"

#include <algorithm>
#include <cstdint>
#include <optional>

namespace pgwarden::session {
namespace {

// (The session sends this message as it is.)
constexpr std::string_view kOptionsError = "invalid startup parameters: options: ";

// pg_split_opts uses isspace() in the C locale: these six bytes.
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Escaped when joining. Besides the C locale's spaces and the backslash, every other control
// byte and every byte >= 0x80: the server splits with isspace() in its own LC_CTYPE, which
// may count more bytes as space than the C locale does. Escaped, a byte is literal in any
// locale, so the server's words are always the ones validated here.
bool needs_escape(char c) {
  const auto u = static_cast<unsigned char>(c);
  return c == '\\' || u <= 0x20 || u >= 0x7f;
}

StartupParamsError malformed(std::string_view why) {
  return StartupParamsError{kSqlstateInvalidParameterValue,
                            std::string(kOptionsError) + std::string(why)};
}

StartupParamsError denied(std::string_view canonical) {
  return StartupParamsError{
      kSqlstateInsufficientPrivilege,
      "permission denied to set parameter \"" + std::string(canonical) + "\""};
}

// "-x" for a printable letter, else its byte value: never more of the client's text.
std::string switch_text(char letter) {
  const auto u = static_cast<unsigned char>(letter);
  if (u > 0x20 && u < 0x7f) {
    return std::string("-") + letter;
  }
  static constexpr std::string_view kHex = "0123456789abcdef";
  return std::string("byte 0x") + kHex[u >> 4] + kHex[u & 0xf];
}

// C atoi as glibc has it: (int) strtol(s, NULL, 10), strtol saturating at LONG_MIN/MAX.
int c_atoi(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && is_space(s[i])) {
    ++i;
  }
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    negative = s[i] == '-';
    ++i;
  }
  std::int64_t v = 0;
  bool saturated = false;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    const int digit = s[i] - '0';
    if (!saturated && v > (INT64_MAX - digit) / 10) {
      saturated = true;
    }
    if (!saturated) {
      v = v * 10 + digit;
    }
  }
  if (saturated) {
    v = negative ? INT64_MIN : INT64_MAX;
  } else if (negative) {
    v = -v;
  }
  return static_cast<int>(static_cast<std::uint32_t>(static_cast<std::uint64_t>(v)));
}

// The settings a switch other than -c/-- sets (process_postgres_switches, with the helpers
// set_debug_options, set_plan_disabling_options and get_stats_option_name). Error: the
// argument that PostgreSQL itself refuses (-f, -t).
std::expected<std::vector<std::string>, StartupParamsError> letter_settings(char letter,
                                                                            std::string_view arg) {
  switch (letter) {
    case 'B':
      return std::vector<std::string>{"shared_buffers"};
    case 'd': {
      const int level = c_atoi(arg);
      std::vector<std::string> out{"log_min_messages"};
      // (log_connections and log_disconnections only for the postmaster's own switches)
      if (level >= 2) {
        out.emplace_back("log_statement");
      }
      if (level >= 3) {
        out.emplace_back("debug_print_parse");
      }
      if (level >= 4) {
        out.emplace_back("debug_print_plan");
      }
      if (level >= 5) {
        out.emplace_back("debug_print_rewritten");
      }
      return out;
    }
    case 'e':
      return std::vector<std::string>{"datestyle"};
    case 'F':
      return std::vector<std::string>{"fsync"};
    case 'f':
      switch (arg.empty() ? '\0' : arg[0]) {
        case 's':
          return std::vector<std::string>{"enable_seqscan"};
        case 'i':
          return std::vector<std::string>{"enable_indexscan"};
        case 'o':
          return std::vector<std::string>{"enable_indexonlyscan"};
        case 'b':
          return std::vector<std::string>{"enable_bitmapscan"};
        case 't':
          return std::vector<std::string>{"enable_tidscan"};
        case 'n':
          return std::vector<std::string>{"enable_nestloop"};
        case 'm':
          return std::vector<std::string>{"enable_mergejoin"};
        case 'h':
          return std::vector<std::string>{"enable_hashjoin"};
        default:
          return std::unexpected(malformed("unknown plan type for -f"));
      }
    case 'h':
    case 'i':
      return std::vector<std::string>{"listen_addresses"};
    case 'k':
      return std::vector<std::string>{"unix_socket_directories"};
    case 'l':
      return std::vector<std::string>{"ssl"};
    case 'N':
      return std::vector<std::string>{"max_connections"};
    case 'O':
      return std::vector<std::string>{"allow_system_table_mods"};
    case 'P':
      return std::vector<std::string>{"ignore_system_indexes"};
    case 'p':
      return std::vector<std::string>{"port"};
    case 'S':
      return std::vector<std::string>{"work_mem"};
    case 's':
      return std::vector<std::string>{"log_statement_stats"};
    case 't':
      if (arg.starts_with("pa")) {
        return std::vector<std::string>{"log_parser_stats"};
      }
      if (arg.starts_with("pl")) {
        return std::vector<std::string>{"log_planner_stats"};
      }
      if (arg.starts_with("e")) {
        return std::vector<std::string>{"log_executor_stats"};
      }
      return std::unexpected(malformed("unknown statistics type for -t"));
    case 'W':
      return std::vector<std::string>{"post_auth_delay"};
    default:
      // b, C, D, E, j, n, r, T, v: nothing, or only for a standalone backend.
      return std::vector<std::string>{};
  }
}

// The name=value of a -c / -- switch (ParseLongOption): its canonical name.
std::expected<std::string, StartupParamsError> long_option_name(char letter, std::string_view arg) {
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos) {
    return std::unexpected(
        malformed(letter == 'c' ? "-c needs name=value" : "--name needs =value"));
  }
  if (eq == 0) {
    return std::unexpected(malformed("empty setting name"));
  }
  return canonical_setting_name(arg.substr(0, eq));
}

}  // namespace

std::string canonical_setting_name(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    } else if (c == '-') {
      c = '_';
    }
  }
  return out;
}

bool is_controlled_setting(std::string_view canonical) {
  if (canonical.starts_with(kOwnSettingPrefix)) {
    return canonical != kPresetSetting;
  }
  return std::ranges::find(kControlledSettings, canonical) != kControlledSettings.end();
}

std::vector<std::string> split_options(std::string_view options) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < options.size()) {
    while (i < options.size() && is_space(options[i])) {
      ++i;
    }
    if (i == options.size()) {
      break;
    }
    std::string word;
    bool escaped = false;
    for (; i < options.size(); ++i) {
      const char c = options[i];
      if (is_space(c) && !escaped) {
        break;
      }
      if (!escaped && c == '\\') {
        escaped = true;  // a backslash at the very end is dropped, as pg_split_opts does
      } else {
        escaped = false;
        word.push_back(c);
      }
    }
    words.push_back(std::move(word));
  }
  return words;
}

namespace {

// parse_options, with `check` called on each switch as it is read: its error stops the
// reading there, so the client is told about the first problem in the server's order.
template <typename Check>
std::expected<std::vector<OptionSwitch>, StartupParamsError> parse_options_checked(
    std::string_view options, const Check& check) {
  const auto words = split_options(options);
  std::vector<OptionSwitch> out;
  // glibc's getopt moves a word that is not a switch to the end and reads on; the server
  // then refuses it, after the switches that follow it were applied.
  std::optional<StartupParamsError> leftover;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string_view word = words[i];
    if (word == "--") {
      // getopt's end of switches: whatever follows is an argument, which the server refuses.
      if (i + 1 < words.size() && !leftover) {
        leftover = malformed("a word after \"--\"");
      }
      break;
    }
    if (word.size() < 2 || word[0] != '-') {
      if (!leftover) {
        leftover = malformed("a word that is not a switch");
      }
      continue;
    }
    // getopt reads a word as a bundle of letters; a letter that takes an argument takes the
    // rest of the word, or else the next word whatever it is.
    for (std::size_t pos = 1; pos < word.size();) {
      const char letter = word[pos++];
      const auto spec = kPostgresSwitches.find(letter);
      if (letter == ':' || spec == std::string_view::npos) {
        return std::unexpected(malformed("unknown switch " + switch_text(letter)));
      }
      OptionSwitch sw;
      sw.letter = letter;
      const bool takes_argument =
          spec + 1 < kPostgresSwitches.size() && kPostgresSwitches[spec + 1] == ':';
      if (takes_argument) {
        if (pos < word.size()) {
          sw.argument = std::string(word.substr(pos));
          pos = word.size();
        } else if (i + 1 < words.size()) {
          sw.argument = words[++i];
        } else {
          return std::unexpected(malformed(switch_text(letter) + " at the end needs an argument"));
        }
        if (sw.argument.empty()) {
          return std::unexpected(malformed("empty argument for " + switch_text(letter)));
        }
      }
      if (letter == 'c' || letter == '-') {
        auto name = long_option_name(letter, sw.argument);
        if (!name) {
          return std::unexpected(std::move(name.error()));
        }
        sw.settings.push_back(std::move(*name));
      } else {
        auto settings = letter_settings(letter, sw.argument);
        if (!settings) {
          return std::unexpected(std::move(settings.error()));
        }
        sw.settings = std::move(*settings);
      }
      if (auto error = check(sw)) {
        return std::unexpected(std::move(*error));
      }
      out.push_back(std::move(sw));
    }
  }
  if (leftover) {
    return std::unexpected(std::move(*leftover));
  }
  return out;
}

}  // namespace

std::expected<std::vector<OptionSwitch>, StartupParamsError> parse_options(
    std::string_view options) {
  return parse_options_checked(
      options, [](const OptionSwitch&) { return std::optional<StartupParamsError>{}; });
}

std::string join_options(const std::vector<OptionSwitch>& switches) {
  std::string out;
  auto append_escaped = [&out](std::string_view text) {
    for (char c : text) {
      if (needs_escape(c)) {
        out.push_back('\\');
      }
      out.push_back(c);
    }
  };
  for (const auto& sw : switches) {
    if (!out.empty()) {
      out.push_back(' ');
    }
    out.push_back('-');
    out.push_back(sw.letter);
    if (sw.letter == 'c') {
      // Two words: "-cfoo" would do too, but this is how clients usually write it.
      out.push_back(' ');
    }
    append_escaped(sw.argument);
  }
  return out;
}

std::expected<std::string, StartupParamsError> strip_own_options(
    std::string_view options, std::map<std::string, std::string>& own) {
  auto switches = parse_options_checked(
      options, [](const OptionSwitch& sw) -> std::optional<StartupParamsError> {
        for (const auto& name : sw.settings) {
          if (is_controlled_setting(name)) {
            return denied(name);
          }
        }
        return std::nullopt;
      });
  if (!switches) {
    return std::unexpected(std::move(switches.error()));
  }
  std::vector<OptionSwitch> kept;
  for (auto& sw : *switches) {
    if ((sw.letter == 'c' || sw.letter == '-') && sw.settings.front() == kPresetSetting) {
      own[std::string(kPresetSetting)] = sw.argument.substr(sw.argument.find('=') + 1);
      continue;
    }
    kept.push_back(std::move(sw));
  }
  return join_options(kept);
}

std::expected<UpstreamStartup, StartupParamsError> build_upstream_startup(
    const wire::StartupMessage& client, std::string_view user, std::string_view database) {
  UpstreamStartup up;
  up.minor = static_cast<std::uint16_t>(std::min<std::uint32_t>(client.minor, 2));
  up.parameters.emplace_back("user", std::string(user));
  up.parameters.emplace_back("database", std::string(database));
  for (const auto& p : client.parameters) {
    // These names are matched exactly, as ProcessStartupPacket does (strcmp).
    if (p.is_protocol_option()) {
      up.unrecognized_options.emplace_back(p.name);
      continue;
    }
    if (p.name == "user" || p.name == "database") {
      continue;
    }
    if (p.name == "replication") {
      up.replication = true;
      continue;
    }
    if (p.name == "options") {
      auto stripped = strip_own_options(p.value, up.own_settings);
      if (!stripped) {
        return std::unexpected(std::move(stripped.error()));
      }
      if (!stripped->empty()) {
        up.parameters.emplace_back("options", std::move(*stripped));
      }
      continue;
    }
    // Any other name is a setting the server looks up case-insensitively.
    const std::string name = canonical_setting_name(p.name);
    if (is_controlled_setting(name)) {
      return std::unexpected(denied(name));
    }
    if (name == kPresetSetting) {
      up.own_settings[std::string(kPresetSetting)] = std::string(p.value);
      continue;
    }
    up.parameters.emplace_back(std::string(p.name), std::string(p.value));
  }
  return up;
}

}  // namespace pgwarden::session
