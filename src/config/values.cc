#include "config/values.h"

#include <arpa/inet.h>

#include <array>
#include <cstdlib>
#include <limits>

namespace pgwarden::config {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Reads a run of decimal digits into `out`; false on no digits or on overflow past `max`.
bool read_number(std::string_view& s, std::uint64_t max, std::uint64_t& out) {
  std::size_t i = 0;
  std::uint64_t v = 0;
  while (i < s.size() && is_digit(s[i])) {
    const auto d = static_cast<std::uint64_t>(s[i] - '0');
    if (v > (max - d) / 10) {
      return false;
    }
    v = v * 10 + d;
    ++i;
  }
  if (i == 0) {
    return false;
  }
  s.remove_prefix(i);
  out = v;
  return true;
}

}  // namespace

std::expected<Duration, std::string> parse_duration(std::string_view text) {
  static constexpr std::string_view kHint =
      "expected a duration such as \"500ms\", \"30s\", \"5m\", \"1h30m\" or \"2d\"";
  if (text == "0") {
    return Duration{0};
  }
  if (text.empty()) {
    return std::unexpected(std::string(kHint));
  }
  const auto max_ms = static_cast<std::uint64_t>(kMaxDuration.count());
  std::uint64_t total = 0;
  std::string_view s = text;
  while (!s.empty()) {
    std::uint64_t n = 0;
    if (!read_number(s, max_ms, n)) {
      return std::unexpected(std::string(kHint));
    }
    std::uint64_t unit_ms = 0;
    if (s.starts_with("ms")) {
      unit_ms = 1;
      s.remove_prefix(2);
    } else if (s.starts_with("s")) {
      unit_ms = 1000;
      s.remove_prefix(1);
    } else if (s.starts_with("m")) {
      unit_ms = 60'000;
      s.remove_prefix(1);
    } else if (s.starts_with("h")) {
      unit_ms = 3'600'000;
      s.remove_prefix(1);
    } else if (s.starts_with("d")) {
      unit_ms = 86'400'000;
      s.remove_prefix(1);
    } else {
      return std::unexpected(std::string(kHint) + " (missing or unknown unit)");
    }
    if (n > max_ms / unit_ms || total > max_ms - n * unit_ms) {
      return std::unexpected("duration is longer than the maximum of 365d");
    }
    total += n * unit_ms;
  }
  return Duration{static_cast<Duration::rep>(total)};
}

std::string format_duration(Duration d) {
  auto ms = static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count());
  if (ms == 0) {
    return "0s";
  }
  static constexpr std::array<std::pair<std::uint64_t, std::string_view>, 5> kUnits{{
      {86'400'000, "d"},
      {3'600'000, "h"},
      {60'000, "m"},
      {1000, "s"},
      {1, "ms"},
  }};
  std::string out;
  for (const auto& [unit, name] : kUnits) {
    if (ms >= unit) {
      out += std::to_string(ms / unit);
      out += name;
      ms %= unit;
    }
  }
  return out;
}

std::expected<std::uint64_t, std::string> parse_size(std::string_view text) {
  static constexpr std::string_view kHint =
      "expected a size such as 8192, \"8kB\", \"16MiB\" or \"1GiB\"";
  std::string_view s = text;
  std::uint64_t n = 0;
  if (!read_number(s, std::numeric_limits<std::uint64_t>::max(), n)) {
    return std::unexpected(std::string(kHint));
  }
  std::uint64_t mult = 0;
  if (s.empty() || s == "B") {
    mult = 1;
  } else if (s == "kB" || s == "KB" || s == "KiB") {
    mult = 1ULL << 10;
  } else if (s == "MB" || s == "MiB") {
    mult = 1ULL << 20;
  } else if (s == "GB" || s == "GiB") {
    mult = 1ULL << 30;
  } else {
    return std::unexpected(std::string(kHint) + " (unknown unit)");
  }
  if (n > std::numeric_limits<std::uint64_t>::max() / mult) {
    return std::unexpected("size is too large");
  }
  return n * mult;
}

bool HostPort::is_ipv6_literal() const {
  in6_addr a6{};
  return inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

bool HostPort::is_ip_literal() const {
  in_addr a4{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || is_ipv6_literal();
}

bool HostPort::is_loopback() const {
  if (host == "localhost") {
    return true;
  }
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    static constexpr std::array<unsigned char, 16> kLoop{0, 0, 0, 0, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 1};
    for (std::size_t i = 0; i < kLoop.size(); ++i) {
      if (a6.s6_addr[i] != kLoop[i]) {
        return false;
      }
    }
    return true;
  }
  return false;
}

std::string HostPort::to_string() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

bool is_valid_dns_name(std::string_view name, bool allow_wildcard) {
  if (allow_wildcard && name.starts_with("*.")) {
    name.remove_prefix(2);
  }
  if (name.empty() || name.size() > 253) {
    return false;
  }
  if (name.back() == '.') {
    name.remove_suffix(1);  // a fully qualified name with its root dot
  }
  std::size_t label = 0;
  char prev = '.';
  for (const char c : name) {
    if (c == '.') {
      if (label == 0 || prev == '-') {
        return false;
      }
      label = 0;
    } else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
      if (label == 0 && c == '-') {
        return false;
      }
      if (++label > 63) {
        return false;
      }
    } else {
      return false;
    }
    prev = c;
  }
  return label > 0 && prev != '-';
}

std::expected<HostPort, std::string> parse_host_port(std::string_view text,
                                                     std::optional<std::uint16_t> default_port) {
  const std::string hint = default_port
                               ? "expected \"host\" or \"host:port\" (IPv6 as \"[::1]:port\")"
                               : "expected \"host:port\" (IPv6 as \"[::1]:port\")";
  HostPort hp;
  std::string_view host;
  std::string_view port;
  bool have_port = false;
  if (text.starts_with("[")) {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return std::unexpected("missing ']' after the IPv6 address; " + hint);
    }
    host = text.substr(1, close - 1);
    const auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return std::unexpected(hint);
      }
      port = rest.substr(1);
      have_port = true;
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) {
      return std::unexpected("invalid IPv6 address in brackets");
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      if (text.find(':') != colon) {
        return std::unexpected("an IPv6 address must be written in brackets, e.g. \"[::1]:6432\"");
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      have_port = true;
    } else {
      host = text;
    }
    in_addr a4{};
    const std::string h(host);
    if (inet_pton(AF_INET, h.c_str(), &a4) != 1) {
      // Not a dotted quad: must be a DNS name, and not something that looks like a
      // malformed IPv4 address ("10.0.0.256").
      bool all_numeric = !h.empty();
      for (const char c : h) {
        if (!is_digit(c) && c != '.') {
          all_numeric = false;
        }
      }
      if (all_numeric || !is_valid_dns_name(h)) {
        return std::unexpected("invalid host name or IP address; " + hint);
      }
    }
  }
  if (host.empty()) {
    return std::unexpected("empty host; " + hint);
  }
  if (!have_port) {
    if (!default_port) {
      return std::unexpected("missing port; " + hint);
    }
    hp.port = *default_port;
  } else {
    std::uint64_t p = 0;
    std::string_view ps = port;
    if (!read_number(ps, 65535, p) || !ps.empty() || p == 0 || port.size() > 5) {
      return std::unexpected("invalid port (expected 1..65535)");
    }
    hp.port = static_cast<std::uint16_t>(p);
  }
  hp.host = std::string(host);
  return hp;
}

EnvLookup process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const std::string key(name);
    const char* v = std::getenv(key.c_str());
    if (v == nullptr) {
      return std::nullopt;
    }
    return std::string(v);
  };
}

std::expected<std::string, std::string> expand_env(std::string_view text, const EnvLookup& env) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c != '$' || i + 1 >= text.size()) {
      out.push_back(c);
      continue;
    }
    const char next = text[i + 1];
    if (next == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (next != '{') {
      out.push_back(c);
      continue;
    }
    const auto close = text.find('}', i + 2);
    if (close == std::string_view::npos) {
      return std::unexpected("\"${\" without a closing \"}\" (write \"$$\" for a literal \"$\")");
    }
    const auto name = text.substr(i + 2, close - i - 2);
    bool valid = !name.empty() && (is_alpha(name[0]) || name[0] == '_');
    for (const char n : name) {
      if (!is_alpha(n) && !is_digit(n) && n != '_') {
        valid = false;
      }
    }
    if (!valid) {
      return std::unexpected(
          "invalid environment variable reference; names are [A-Za-z_][A-Za-z0-9_]* "
          "(write \"$$\" for a literal \"$\")");
    }
    auto value = env ? env(name) : std::nullopt;
    if (!value) {
      return std::unexpected("environment variable " + std::string(name) + " is not set");
    }
    out += *value;
    i = close;
  }
  return out;
}

}  // namespace pgwarden::config
