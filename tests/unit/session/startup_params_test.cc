// The upstream StartupMessage: user and database replaced, the client's other parameters kept
// in order, pgwarden's own settings taken out of the parameters and out of `options` in each
// spelling PostgreSQL accepts (-c name=value, -cname=value, --name=value), the rest of
// `options` re-joined with PostgreSQL's backslash escaping, "_pq_." options collected,
// replication flagged, the minor version capped at 2, and errors for malformed options.
#include "session/startup_params.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wire/framer.h"
#include "wire/startup.h"

namespace pgwarden::session {
namespace {

using Own = std::map<std::string, std::string>;
using Params = std::vector<std::pair<std::string, std::string>>;

// Splits like PostgreSQL's pg_split_opts (whitespace separates, a backslash makes the next
// character literal): the reference for what the server will see.
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

std::string strip_ok(std::string_view options, Own& own) {
  auto r = strip_own_options(options, own);
  EXPECT_TRUE(r.has_value()) << options << ": " << (r ? "" : r.error());
  return r.value_or("<error>");
}

TEST(StripOwnOptions, NothingToStrip) {
  Own own;
  EXPECT_EQ(strip_ok("", own), "");
  EXPECT_EQ(strip_ok("   \t ", own), "");
  EXPECT_EQ(strip_ok("-c geqo=off", own), "-c geqo=off");
  EXPECT_EQ(strip_ok("-c geqo=off --work_mem=64MB -cstatement_timeout=5s", own),
            "-c geqo=off --work_mem=64MB -cstatement_timeout=5s");
  EXPECT_TRUE(own.empty());
}

TEST(StripOwnOptions, RemovesEachSpellingOfOwnSettings) {
  struct Case {
    std::string_view options;
    std::string_view name;
    std::string_view value;
  };
  for (const Case& c :
       {Case{"-c pgwarden.preset=readonly", "pgwarden.preset", "readonly"},
        Case{"-cpgwarden.x=y", "pgwarden.x", "y"}, Case{"--pgwarden.x=y", "pgwarden.x", "y"},
        Case{"-c PGWARDEN.Preset=ReadOnly", "pgwarden.preset", "ReadOnly"},
        Case{"-c pgwarden.x=", "pgwarden.x", ""}, Case{"-c pgwarden.x=a=b", "pgwarden.x", "a=b"},
        Case{"-c pgwarden.x=with\\ space", "pgwarden.x", "with space"}}) {
    SCOPED_TRACE(c.options);
    Own own;
    EXPECT_EQ(strip_ok(c.options, own), "");
    EXPECT_EQ(own, (Own{{std::string(c.name), std::string(c.value)}}));
  }
}

TEST(StripOwnOptions, KeepsOtherSwitchesInOrder) {
  Own own;
  auto out = strip_ok(
      "-c geqo=off -c pgwarden.preset=readonly --work_mem=64MB -cpgwarden.a=b "
      "-c statement_timeout=5s --pgwarden.c=d -cjit=off",
      own);
  EXPECT_EQ(out, "-c geqo=off --work_mem=64MB -c statement_timeout=5s -cjit=off");
  EXPECT_EQ(own, (Own{{"pgwarden.preset", "readonly"}, {"pgwarden.a", "b"}, {"pgwarden.c", "d"}}));
}

TEST(StripOwnOptions, PreservesEscaping) {
  Own own;
  // search_path "a b": the escaped space must survive, or the server sees two arguments.
  auto out = strip_ok("-c search_path=a\\ b -c pgwarden.preset=readonly", own);
  EXPECT_EQ(out, "-c search_path=a\\ b");
  EXPECT_EQ(pg_split_opts(out), (std::vector<std::string>{"-c", "search_path=a b"}));
  // A literal backslash and a tab are escaped again.
  out = strip_ok("-c application_name=x\\\\y\\\tz", own);
  EXPECT_EQ(pg_split_opts(out), (std::vector<std::string>{"-c", "application_name=x\\y\tz"}));
  // Any whitespace separates; the result uses single spaces.
  EXPECT_EQ(strip_ok("  -c\tgeqo=off \n\r -c  jit=off ", own), "-c geqo=off -c jit=off");
  // A trailing backslash is literal (pg_split_opts keeps it), and stays literal.
  out = strip_ok("-c application_name=x\\", own);
  EXPECT_EQ(pg_split_opts(out), (std::vector<std::string>{"-c", "application_name=x\\"}));
}

TEST(StripOwnOptions, ServerSeesTheSameTokensLessOwnOnes) {
  // Whatever the escaping, the server must split the result into exactly the client's tokens
  // without the pgwarden ones, and stripping again changes nothing.
  for (std::string_view options :
       {std::string_view{"-c a=1\\ 2\\\\ -c pgwarden.x=1 --b=\\ "},
        std::string_view{"--pgwarden.q=1 -c\\ x=y"}, std::string_view{"\\-c pgwarden.x=y"},
        std::string_view{"-c search_path=\"$user\",\\ public -cpgwarden.preset=readonly"}}) {
    SCOPED_TRACE(options);
    Own own;
    auto out = strip_ok(options, own);
    std::vector<std::string> expected;
    auto tokens = pg_split_opts(options);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string_view t = tokens[i];
      if (t == "-c" && i + 1 < tokens.size() && tokens[i + 1].starts_with("pgwarden.")) {
        ++i;
        continue;
      }
      if ((t.starts_with("-c") || t.starts_with("--")) && t.substr(2).starts_with("pgwarden.")) {
        continue;
      }
      expected.emplace_back(t);
    }
    EXPECT_EQ(pg_split_opts(out), expected);
    Own again;
    EXPECT_EQ(strip_ok(out, again), out);
    EXPECT_TRUE(again.empty());
  }
}

TEST(StripOwnOptions, Errors) {
  for (std::string_view bad :
       {"-c", "-c geqo=off -c", "  -c  ", "-c pgwarden.preset", "-cpgwarden.preset", "--pgwarden.x",
        "-c pgwarden.=x", "--PGWARDEN.=x"}) {
    SCOPED_TRACE(bad);
    Own own;
    auto r = strip_own_options(bad, own);
    ASSERT_FALSE(r.has_value());
    EXPECT_FALSE(r.error().empty());
  }
}

TEST(StripOwnOptions, ErrorsDoNotEchoValues) {
  Own own;
  auto r = strip_own_options("-c pgwarden.token-s3cr3t", own);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().find("s3cr3t"), std::string::npos) << r.error();
}

wire::StartupMessage startup(std::uint16_t minor,
                             std::vector<std::pair<std::string_view, std::string_view>> params) {
  wire::StartupMessage m;
  m.major = 3;
  m.minor = minor;
  for (auto [n, v] : params) {
    m.parameters.push_back({n, v});
  }
  return m;
}

TEST(BuildUpstreamStartup, ReplacesUserAndDatabaseAndKeepsOrder) {
  auto client = startup(0, {{"application_name", "psql"},
                            {"user", "alice@example.com"},
                            {"client_encoding", "UTF8"},
                            {"database", "clientdb"},
                            {"DateStyle", "ISO, MDY"},
                            {"TimeZone", "Europe/Paris"},
                            {"options", "-c geqo=off"}});
  auto up = build_upstream_startup(client, "app", "appdb");
  ASSERT_TRUE(up.has_value()) << up.error();
  EXPECT_EQ(up->parameters, (Params{{"user", "app"},
                                    {"database", "appdb"},
                                    {"application_name", "psql"},
                                    {"client_encoding", "UTF8"},
                                    {"DateStyle", "ISO, MDY"},
                                    {"TimeZone", "Europe/Paris"},
                                    {"options", "-c geqo=off"}}));
  EXPECT_EQ(up->minor, 0);
  EXPECT_FALSE(up->replication);
  EXPECT_TRUE(up->unrecognized_options.empty());
  EXPECT_TRUE(up->own_settings.empty());
}

TEST(BuildUpstreamStartup, UserAndDatabaseAreSetEvenIfTheClientSentNone) {
  auto up = build_upstream_startup(startup(0, {}), "app", "appdb");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->parameters, (Params{{"user", "app"}, {"database", "appdb"}}));
}

TEST(BuildUpstreamStartup, OwnSettingsAreTakenOut) {
  auto client = startup(0, {{"user", "alice"},
                            {"pgwarden.preset", "readonly"},
                            {"PGWARDEN.Audit", "on"},
                            {"options", "-c pgwarden.x=1 -c search_path=a\\ b --pgwarden.y=2"},
                            {"application_name", "app"}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value()) << up.error();
  EXPECT_EQ(up->parameters, (Params{{"user", "u"},
                                    {"database", "d"},
                                    {"options", "-c search_path=a\\ b"},
                                    {"application_name", "app"}}));
  EXPECT_EQ(up->own_settings, (Own{{"pgwarden.preset", "readonly"},
                                   {"pgwarden.audit", "on"},
                                   {"pgwarden.x", "1"},
                                   {"pgwarden.y", "2"}}));
}

TEST(BuildUpstreamStartup, OptionsWithOnlyOwnSettingsAreDropped) {
  auto client = startup(0, {{"options", " -c pgwarden.preset=readonly "}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}}));
  EXPECT_EQ(up->own_settings, (Own{{"pgwarden.preset", "readonly"}}));
}

TEST(BuildUpstreamStartup, ProtocolOptionsAreCollectedNotForwarded) {
  auto client = startup(2, {{"_pq_.compression", "zstd"},
                            {"user", "alice"},
                            {"_pq_.other", "1"},
                            {"application_name", "x"}});
  auto up = build_upstream_startup(client, "u", "d");
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->unrecognized_options, (std::vector<std::string>{"_pq_.compression", "_pq_.other"}));
  EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}, {"application_name", "x"}}));
}

TEST(BuildUpstreamStartup, ReplicationIsFlaggedNotForwarded) {
  for (std::string_view value : {"true", "database", "on", "1"}) {
    auto up = build_upstream_startup(startup(0, {{"replication", value}}), "u", "d");
    ASSERT_TRUE(up.has_value());
    // Any value: the session decides, and nothing of it reaches the server unchecked.
    EXPECT_TRUE(up->replication) << value;
    EXPECT_EQ(up->parameters, (Params{{"user", "u"}, {"database", "d"}}));
  }
}

TEST(BuildUpstreamStartup, MinorVersionCappedAtTwo) {
  for (auto [asked, expected] : {std::pair<std::uint16_t, std::uint16_t>{0, 0},
                                 {1, 1},
                                 {2, 2},
                                 {3, 2},
                                 {100, 2},
                                 {0xffff, 2}}) {
    auto up = build_upstream_startup(startup(asked, {}), "u", "d");
    ASSERT_TRUE(up.has_value());
    EXPECT_EQ(up->minor, expected) << asked;
  }
}

TEST(BuildUpstreamStartup, Errors) {
  for (auto params : std::vector<std::vector<std::pair<std::string_view, std::string_view>>>{
           {{"options", "-c geqo=off -c"}},
           {{"options", "-c pgwarden.preset"}},
           {{"pgwarden.", "x"}},
           {{"PGWARDEN.", "x"}}}) {
    auto up = build_upstream_startup(startup(0, params), "u", "d");
    EXPECT_FALSE(up.has_value()) << params.front().first << "=" << params.front().second;
  }
}

TEST(BuildUpstreamStartup, ResultEncodesAndDecodesAsAStartupMessage) {
  auto client = startup(2, {{"user", "alice"},
                            {"options", "-c search_path=a\\ b\\\\c -c pgwarden.preset=readonly"},
                            {"application_name", "psql"},
                            {"_pq_.x", "y"}});
  auto up = build_upstream_startup(client, "app", "appdb");
  ASSERT_TRUE(up.has_value());
  wire::StartupMessage m;
  m.minor = up->minor;
  for (const auto& [n, v] : up->parameters) {
    m.parameters.push_back({n, v});
  }
  wire::ByteVector bytes;
  wire::encode(m, bytes);
  auto framed = wire::frame_startup(bytes);
  ASSERT_TRUE(framed && framed->frame);
  auto decoded = wire::parse_startup_message(framed->frame->body);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->minor, 2);
  EXPECT_EQ(decoded->find("user"), "app");
  EXPECT_EQ(decoded->find("database"), "appdb");
  EXPECT_FALSE(decoded->find("_pq_.x"));
  EXPECT_FALSE(decoded->has_protocol_options());
  ASSERT_TRUE(decoded->find("options"));
  EXPECT_EQ(pg_split_opts(*decoded->find("options")),
            (std::vector<std::string>{"-c", "search_path=a b\\c"}));
}

}  // namespace
}  // namespace pgwarden::session
