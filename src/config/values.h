// Parsers for the scalar value syntaxes of the configuration file: durations ("30s",
// "1h30m", "250ms"), byte sizes (8192, "8KiB", "1GiB"), network addresses ("host:port",
// "[::1]:6432") and `${NAME}` environment expansion. They are pure functions of their input
// (the environment is passed in as a lookup), return std::expected with a human-readable
// reason, never throw, and never echo the value itself in an error (a value may have come
// from a secret environment variable).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace pgwarden::config {

using Duration = std::chrono::milliseconds;

// Longest duration any key accepts: one year. Larger values are almost certainly typos and
// would overflow timer arithmetic downstream.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 365);

// Parses a non-negative duration: one or more <integer><unit> groups, units ms, s, m, h, d
// (e.g. "500ms", "30s", "1h30m", "2d"). The bare string "0" is also accepted.
std::expected<Duration, std::string> parse_duration(std::string_view text);

// Formats a duration in the largest exact units ("90s" -> "1m30s", 0 -> "0s").
std::string format_duration(Duration d);

// Parses a byte size written as a string: <integer>[unit], units B, kB/KB/KiB, MB/MiB,
// GB/GiB, all powers of 1024 (as in PostgreSQL's GUCs). Plain integers are handled by the
// caller (they arrive as TOML integers).
std::expected<std::uint64_t, std::string> parse_size(std::string_view text);

// A TCP endpoint. `host` is stored without IPv6 brackets.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;

  bool is_ipv6_literal() const;
  bool is_ip_literal() const;
  // 127.0.0.0/8, ::1 and the name "localhost".
  bool is_loopback() const;
  // "host:port", with brackets around an IPv6 literal.
  std::string to_string() const;
  bool operator==(const HostPort&) const = default;
};

// Parses "host:port", "[v6]:port", an IPv4 literal, an IPv6 literal in brackets, or a DNS
// name (RFC 1123 labels). When default_port is set, the ":port" part may be omitted. Port 0
// is refused.
std::expected<HostPort, std::string> parse_host_port(
    std::string_view text, std::optional<std::uint16_t> default_port = std::nullopt);

// True for a syntactically valid DNS host name (letters, digits, hyphens, dots; labels of
// 1..63 bytes; at most 253 bytes), optionally with a leading "*." wildcard label when
// allow_wildcard is set.
bool is_valid_dns_name(std::string_view name, bool allow_wildcard = false);

// Looks an environment variable up; nullopt when it is unset.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// The process environment (getenv).
EnvLookup process_environment();

// Expands `${NAME}` (NAME = [A-Za-z_][A-Za-z0-9_]*) with env. `$$` stands for one literal
// `$`; a `$` followed by anything else is kept as is. Unset variables, `${` without `}` and
// invalid names are errors. The result of an expansion is not expanded again.
std::expected<std::string, std::string> expand_env(std::string_view text, const EnvLookup& env);

}  // namespace pgwarden::config
