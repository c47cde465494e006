// Scalar value syntaxes: durations, sizes, addresses, ${VAR} expansion.
#include <gtest/gtest.h>

#include <map>

#include "config/values.h"

namespace pgwarden::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(Duration, AcceptsUnitsAndCompounds) {
  EXPECT_EQ(parse_duration("500ms").value(), milliseconds(500));
  EXPECT_EQ(parse_duration("30s").value(), seconds(30));
  EXPECT_EQ(parse_duration("5m").value(), minutes(5));
  EXPECT_EQ(parse_duration("24h").value(), hours(24));
  EXPECT_EQ(parse_duration("2d").value(), hours(48));
  EXPECT_EQ(parse_duration("1h30m").value(), minutes(90));
  EXPECT_EQ(parse_duration("1m500ms").value(), milliseconds(60'500));
  EXPECT_EQ(parse_duration("0").value(), milliseconds(0));
  EXPECT_EQ(parse_duration("0s").value(), milliseconds(0));
  EXPECT_EQ(parse_duration("365d").value(), kMaxDuration);
}

TEST(Duration, RejectsMalformed) {
  for (const char* bad : {"", "10", "s", "-5s", "5 s", " 5s", "5s ", "1.5s", "5x", "5sec", "5S",
                          "1h-3m", "ms", "9999999999999999999999s", "366d", "8761h"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << bad;
  }
}

TEST(Duration, OverflowIsRejectedNotWrapped) {
  EXPECT_FALSE(parse_duration("18446744073709551615ms").has_value());
  EXPECT_FALSE(parse_duration("364d25h").has_value());
  EXPECT_FALSE(parse_duration("200d200d").has_value());
}

TEST(Duration, Formats) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(seconds(90)), "1m30s");
  EXPECT_EQ(format_duration(hours(24)), "1d");
  EXPECT_EQ(format_duration(milliseconds(1500)), "1s500ms");
  for (const Duration d : std::initializer_list<Duration>{milliseconds(1), seconds(61), hours(49),
                                                          milliseconds(86'400'001)}) {
    EXPECT_EQ(parse_duration(format_duration(d)).value(), d);
  }
}

TEST(Size, UnitsArePowersOf1024) {
  EXPECT_EQ(parse_size("8192").value(), 8192u);
  EXPECT_EQ(parse_size("10B").value(), 10u);
  EXPECT_EQ(parse_size("8kB").value(), 8192u);
  EXPECT_EQ(parse_size("8KiB").value(), 8192u);
  EXPECT_EQ(parse_size("16MiB").value(), 16u << 20);
  EXPECT_EQ(parse_size("1GB").value(), 1u << 30);
  EXPECT_EQ(parse_size("1GiB").value(), 1u << 30);
}

TEST(Size, RejectsMalformedAndOverflow) {
  for (const char* bad : {"", "k", "8 kB", "8kb", "-1", "1.5MB", "8TiB", "99999999999999999999",
                          "18446744073709551615GiB"}) {
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
  }
}

TEST(Address, HostPortForms) {
  auto a = parse_host_port("0.0.0.0:6432").value();
  EXPECT_EQ(a.host, "0.0.0.0");
  EXPECT_EQ(a.port, 6432);
  EXPECT_FALSE(a.is_loopback());

  auto b = parse_host_port("[::1]:6432").value();
  EXPECT_EQ(b.host, "::1");
  EXPECT_TRUE(b.is_ipv6_literal());
  EXPECT_TRUE(b.is_loopback());
  EXPECT_EQ(b.to_string(), "[::1]:6432");

  auto c = parse_host_port("[2001:db8::5]:5432").value();
  EXPECT_EQ(c.host, "2001:db8::5");
  EXPECT_FALSE(c.is_loopback());

  auto d = parse_host_port("db.internal:5432").value();
  EXPECT_EQ(d.host, "db.internal");
  EXPECT_FALSE(d.is_ip_literal());

  EXPECT_TRUE(parse_host_port("127.0.0.2:1").value().is_loopback());
  EXPECT_TRUE(parse_host_port("localhost:65535").value().is_loopback());
  EXPECT_TRUE(parse_host_port("[::]:6432").has_value());
}

TEST(Address, DefaultPort) {
  EXPECT_EQ(parse_host_port("db.internal", 5432).value().port, 5432);
  EXPECT_EQ(parse_host_port("[::1]", 5432).value().port, 5432);
  EXPECT_FALSE(parse_host_port("db.internal").has_value());
}

TEST(Address, RejectsMalformed) {
  for (const char* bad : {"",
                          ":6432",
                          "host:",
                          "host:0",
                          "host:65536",
                          "host:-1",
                          "host:+80",
                          "host:6432x",
                          "::1:6432",
                          "[::1:6432",
                          "[::1]6432",
                          "[not-v6]:1",
                          "[127.0.0.1]:1",
                          "10.0.0.256:1",
                          "1.2.3:5",
                          "bad_host!:1",
                          "-lead.example:1",
                          "trail-.example:1",
                          "a..b:1",
                          "host:000006432",
                          "[::1]:"}) {
    EXPECT_FALSE(parse_host_port(bad).has_value()) << bad;
  }
}

TEST(DnsName, Validation) {
  EXPECT_TRUE(is_valid_dns_name("reporting.db.example.com"));
  EXPECT_TRUE(is_valid_dns_name("example.com."));
  EXPECT_FALSE(is_valid_dns_name("*.example.com"));
  EXPECT_TRUE(is_valid_dns_name("*.example.com", true));
  EXPECT_FALSE(is_valid_dns_name("a.*.example.com", true));
  EXPECT_FALSE(is_valid_dns_name(std::string(64, 'a') + ".com"));
  EXPECT_TRUE(is_valid_dns_name(std::string(63, 'a') + ".com"));
  EXPECT_FALSE(is_valid_dns_name(std::string(254, 'a')));
}

EnvLookup fake_env(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

TEST(Env, ExpandsVariables) {
  const auto env = fake_env({{"A", "alpha"}, {"B_2", "${A}"}, {"EMPTY", ""}});
  EXPECT_EQ(expand_env("x${A}y", env).value(), "xalphay");
  EXPECT_EQ(expand_env("${A}${A}", env).value(), "alphaalpha");
  EXPECT_EQ(expand_env("${EMPTY}", env).value(), "");
  // The value of an expansion is not expanded again.
  EXPECT_EQ(expand_env("${B_2}", env).value(), "${A}");
  EXPECT_EQ(expand_env("plain", env).value(), "plain");
}

TEST(Env, DollarEscapes) {
  const auto env = fake_env({});
  EXPECT_EQ(expand_env("pa$$word", env).value(), "pa$word");
  EXPECT_EQ(expand_env("$${A}", env).value(), "${A}");
  EXPECT_EQ(expand_env("a$b", env).value(), "a$b");
  EXPECT_EQ(expand_env("end$", env).value(), "end$");
  EXPECT_EQ(expand_env("SCRAM-SHA-256$4096:x", env).value(), "SCRAM-SHA-256$4096:x");
}

TEST(Env, Errors) {
  const auto env = fake_env({{"A", "alpha"}});
  auto unset = expand_env("${MISSING}", env);
  ASSERT_FALSE(unset.has_value());
  EXPECT_NE(unset.error().find("MISSING"), std::string::npos);
  EXPECT_NE(unset.error().find("not set"), std::string::npos);
  for (const char* bad : {"${", "${A", "${}", "${1A}", "${A-B}", "${A }", "x${A}${"}) {
    EXPECT_FALSE(expand_env(bad, env).has_value()) << bad;
  }
}

}  // namespace
}  // namespace pgwarden::config
