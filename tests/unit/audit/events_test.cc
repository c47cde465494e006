// Audit events: exactly the SPEC section 7 fields, null for what is not known, attributes that
// cannot override the identity, invalid UTF-8 replaced when serialised, RFC 3339 timestamps.
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "audit/audit_log.h"
#include "audit/events.h"

namespace pgwarden::audit {
namespace {

using nlohmann::json;

const std::set<std::string> kCommon = {"ts",  "event",    "session",  "listener", "client",
                                       "tls", "identity", "database", "backend",  "backend_user"};

std::set<std::string> keys(const json& j) {
  std::set<std::string> out;
  for (const auto& [k, v] : j.items()) {
    out.insert(k);
  }
  return out;
}

std::set<std::string> common_plus(std::initializer_list<std::string> extra) {
  std::set<std::string> out = kCommon;
  out.insert(extra.begin(), extra.end());
  return out;
}

SessionFacts full_facts() {
  SessionFacts f;
  f.session_id = 0x00c0ffee12345678ULL;
  f.listener = "main";
  f.client = "[2001:db8::5]:50432";
  f.tls = TlsFacts{"TLSv1.3", "TLS_AES_256_GCM_SHA384", "db.example.com", "CN=alice"};
  identity::Identity id;
  id.name = "alice@example.com";
  id.method = config::AuthMethod::Cert;
  id.groups = {"analysts", "tag:ci"};
  id.attributes = {{"cert_subject", "CN=alice,O=Example"}, {"node", "laptop"}};
  f.identity = id;
  f.database = "appdb";
  f.backend = "app";
  f.backend_user = "pw_alice_appdb";
  f.user = "alice";
  return f;
}

// "YYYY-MM-DDTHH:MM:SS.ffffffZ": digits where the pattern has 'd', the rest literally.
bool is_rfc3339_us(const std::string& s) {
  static constexpr std::string_view kPattern = "dddd-dd-ddTdd:dd:dd.ddddddZ";
  if (s.size() != kPattern.size()) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool digit = s[i] >= '0' && s[i] <= '9';
    if (kPattern[i] == 'd' ? !digit : s[i] != kPattern[i]) {
      return false;
    }
  }
  return true;
}

TEST(Events, SessionStartHasExactlyTheSpecFields) {
  const json j = session_start(full_facts(), "SCRAM-SHA-256-PLUS");
  EXPECT_EQ(keys(j), common_plus({"upstream_auth"}));
  EXPECT_EQ(j["event"], "session_start");
  EXPECT_EQ(j["session"], "00c0ffee12345678");
  EXPECT_EQ(j["listener"], "main");
  EXPECT_EQ(j["client"], "[2001:db8::5]:50432");
  EXPECT_EQ(j["database"], "appdb");
  EXPECT_EQ(j["backend"], "app");
  EXPECT_EQ(j["backend_user"], "pw_alice_appdb");
  EXPECT_EQ(j["upstream_auth"], "SCRAM-SHA-256-PLUS");
  EXPECT_TRUE(is_rfc3339_us(j["ts"].get<std::string>())) << j["ts"];

  const json& tls = j["tls"];
  EXPECT_EQ(keys(tls), (std::set<std::string>{"version", "cipher", "sni", "client_subject"}));
  EXPECT_EQ(tls["version"], "TLSv1.3");
  EXPECT_EQ(tls["cipher"], "TLS_AES_256_GCM_SHA384");
  EXPECT_EQ(tls["sni"], "db.example.com");
  EXPECT_EQ(tls["client_subject"], "CN=alice");

  const json& id = j["identity"];
  EXPECT_EQ(keys(id), (std::set<std::string>{"name", "method", "groups", "cert_subject", "node"}));
  EXPECT_EQ(id["name"], "alice@example.com");
  EXPECT_EQ(id["method"], "cert");
  EXPECT_EQ(id["groups"], json::array({"analysts", "tag:ci"}));
  EXPECT_EQ(id["cert_subject"], "CN=alice,O=Example");
  EXPECT_EQ(id["node"], "laptop");
}

TEST(Events, AuthFailureAddsUserMethodReason) {
  SessionFacts f = full_facts();
  f.identity.reset();
  f.backend_user.clear();
  f.tls.reset();
  const json j = auth_failure(f, "scram", "password authentication failed");
  EXPECT_EQ(keys(j), common_plus({"user", "method", "reason"}));
  EXPECT_EQ(j["event"], "auth_failure");
  EXPECT_EQ(j["user"], "alice");
  EXPECT_EQ(j["method"], "scram");
  EXPECT_EQ(j["reason"], "password authentication failed");
  EXPECT_TRUE(j["identity"].is_null());
  EXPECT_TRUE(j["tls"].is_null());
  EXPECT_TRUE(j["backend_user"].is_null());
  EXPECT_EQ(j["database"], "appdb");
}

TEST(Events, SessionDeniedAddsSqlstateReason) {
  const json j = session_denied(full_facts(), "42501", "no grant for alice@example.com on appdb");
  EXPECT_EQ(keys(j), common_plus({"sqlstate", "reason"}));
  EXPECT_EQ(j["event"], "session_denied");
  EXPECT_EQ(j["sqlstate"], "42501");
  EXPECT_EQ(j["reason"], "no grant for alice@example.com on appdb");
}

TEST(Events, SessionEndAddsTotals) {
  const SessionTotals totals{std::chrono::microseconds(1'234'567), 1000, 200'000, 42,
                             "client terminated"};
  const json j = session_end(full_facts(), totals);
  EXPECT_EQ(keys(j), common_plus({"duration_us", "bytes_in", "bytes_out", "statements", "reason"}));
  EXPECT_EQ(j["event"], "session_end");
  EXPECT_EQ(j["duration_us"], 1'234'567);
  EXPECT_EQ(j["bytes_in"], 1000u);
  EXPECT_EQ(j["bytes_out"], 200'000u);
  EXPECT_EQ(j["statements"], 42u);
  EXPECT_EQ(j["reason"], "client terminated");
  EXPECT_TRUE(j["duration_us"].is_number_integer());
}

TEST(Events, AbsentTlsFieldsAreNull) {
  SessionFacts f = full_facts();
  f.tls->sni.clear();
  f.tls->client_subject.reset();
  const json j = session_start(f, "md5");
  EXPECT_TRUE(j["tls"]["sni"].is_null());
  EXPECT_TRUE(j["tls"]["client_subject"].is_null());
  EXPECT_EQ(j["tls"]["version"], "TLSv1.3");
}

TEST(Events, AttributesCannotOverrideIdentityFields) {
  SessionFacts f = full_facts();
  f.identity->attributes = {
      {"name", "postgres"}, {"method", "trust"}, {"groups", "admins"}, {"tags", "tag:ci"}};
  const json j = session_start(f, "scram");
  EXPECT_EQ(j["identity"]["name"], "alice@example.com");
  EXPECT_EQ(j["identity"]["method"], "cert");
  EXPECT_EQ(j["identity"]["groups"], json::array({"analysts", "tag:ci"}));
  EXPECT_EQ(j["identity"]["tags"], "tag:ci");
}

TEST(Events, EveryAuthMethodHasItsConfigSpelling) {
  SessionFacts f = full_facts();
  for (const auto m :
       {config::AuthMethod::Trust, config::AuthMethod::Scram, config::AuthMethod::Cert,
        config::AuthMethod::Token, config::AuthMethod::ApiKey, config::AuthMethod::Tailscale,
        config::AuthMethod::Passthrough}) {
    f.identity->method = m;
    EXPECT_EQ(session_start(f, "")["identity"]["method"], std::string(config::to_string(m)));
  }
}

TEST(Events, InvalidUtf8IsReplacedWhenWritten) {
  SessionFacts f = full_facts();
  f.identity.reset();
  f.user = std::string("bob\xff\xfe") + "\xc3";  // invalid bytes and a truncated sequence
  f.database = "db\x80name";
  const json ev = auth_failure(f, "scram", "password authentication failed");

  const auto dir =
      std::filesystem::temp_directory_path() / ("pgwarden-events-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "audit.jsonl";
  {
    auto log = AuditLog::open(file);
    ASSERT_TRUE(log.has_value()) << log.error();
    (*log)->write(ev);
    EXPECT_EQ((*log)->errors(), 0u);
  }
  std::ifstream in(file, std::ios::binary);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  std::filesystem::remove_all(dir);

  const json back = json::parse(line);  // strict parser: throws on invalid UTF-8
  const std::string user = back["user"];
  EXPECT_EQ(user.substr(0, 3), "bob");
  EXPECT_NE(user.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
  EXPECT_EQ(user.find('\xff'), std::string::npos);
  EXPECT_EQ(back["database"], "db\xef\xbf\xbdname");
}

TEST(Events, SessionIdFormat) {
  EXPECT_EQ(format_session_id(0), "0000000000000000");
  EXPECT_EQ(format_session_id(0xdeadbeefULL), "00000000deadbeef");
  EXPECT_EQ(format_session_id(~0ULL), "ffffffffffffffff");
}

TEST(Events, Rfc3339Format) {
  using namespace std::chrono;
  EXPECT_EQ(rfc3339_us(system_clock::time_point{}), "1970-01-01T00:00:00.000000Z");
  // 2026-11-21T11:00:38.123456Z
  const auto t = sys_days{year{2026} / November / 21} + hours(11) + seconds(38) +
                 microseconds(123'456) + nanoseconds(999);
  EXPECT_EQ(rfc3339_us(time_point_cast<system_clock::duration>(t)), "2026-11-21T11:00:38.123456Z");
  const auto leap_day = sys_days{year{2024} / February / 29} + hours(23) + minutes(59) +
                        seconds(59) + microseconds(999'999);
  EXPECT_EQ(rfc3339_us(time_point_cast<system_clock::duration>(leap_day)),
            "2024-02-29T23:59:59.999999Z");
  // Before the epoch the fraction still counts forwards from the second.
  EXPECT_EQ(rfc3339_us(system_clock::time_point{} - microseconds(1)),
            "1969-12-31T23:59:59.999999Z");

  EXPECT_FALSE(is_rfc3339_us("2026-11-21T11:00:38.123456"));
  EXPECT_FALSE(is_rfc3339_us("2026-11-21 11:00:38.123456Z"));
  const std::string now = rfc3339_now_us();
  EXPECT_TRUE(is_rfc3339_us(now)) << now;
  const auto before = floor<seconds>(system_clock::now()) - seconds(5);
  EXPECT_GE(now, rfc3339_us(before));
}

}  // namespace
}  // namespace pgwarden::audit
