// L4, log injection: an unauthenticated client whose user name, database and
// application_name hold line breaks cannot forge a line of pgwarden's log, in the text format
// or in the JSON one. Real libpq clients against pgwarden in front of PostgreSQL 15; the
// login fails (unknown user), which pgwarden logs with the user name.
#include <chrono>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "config/users_file.h"
#include "crypto/scram.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/test_util.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;

// Each forged value carries a line that would look like pgwarden's own if written raw.
constexpr std::string_view kForgedUser = "x\nFAKE LINE [info] session ok\r\nFAKE CR";
constexpr std::string_view kForgedDatabase = "db\nFAKE LINE database";
constexpr std::string_view kForgedApplication = "app\nFAKE LINE application_name";
// How the user name shows up in either format: "\n" as the two characters '\' 'n'.
constexpr std::string_view kEscapedUser = "x\\nFAKE LINE [info] session ok\\r\\nFAKE CR";

class LogInjection : public ::testing::TestWithParam<std::string_view> {
 protected:
  // Starts pgwarden with `log_format`, makes one forged login and returns the whole log once
  // pgwarden has logged the refusal.
  static std::string log_after_forged_login(std::string_view log_format) {
    PgCluster& pg = shared_cluster();
    const std::uint16_t port = pick_free_port();
    PgwardenOptions options;
    options.ports = {port};
    options.config =
        "[server]\nlog_level = \"debug\"\nlog_format = " + toml_quote(log_format) +
        "\n\n[[listener]]\nname = \"main\"\nlisten = " +
        toml_quote("127.0.0.1:" + std::to_string(port)) +
        "\ntls = \"disable\"\nauth = [\"scram\"]\nusers_file = \"users.txt\"\n\n" +
        "[backend.app]\naddress = " + toml_quote("localhost:" + std::to_string(pg.port())) +
        "\ntls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) +
        "\nuser = \"loginjection\"\n";
    options.files.push_back(PgwardenFile{"users.txt", users_line("alice", "Log-Inj-Pw-4kT9")});
    auto proxy = PgwardenProcess::start(options);

    ConnInfo ci = pg.conninfo(std::string(kForgedUser), "wrong-password", HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("sslmode", "disable");
    ci.set("dbname", std::string(kForgedDatabase));
    ci.set("application_name", std::string(kForgedApplication));
    const auto out = try_connect(ci, 30s);
    EXPECT_FALSE(out.ok());
    EXPECT_EQ(out.sqlstate, "28P01") << out.error;
    EXPECT_TRUE(proxy->wait_for_log(std::string(kEscapedUser), 10s)) << proxy->log();
    return proxy->log();
  }
};

TEST_P(LogInjection, ClientTextCannotStartALine) {
  const std::string log = log_after_forged_login(GetParam());
  std::istringstream lines(log);
  std::size_t mentions = 0;
  for (std::string line; std::getline(lines, line);) {
    EXPECT_FALSE(line.starts_with("FAKE")) << "forged line in the log:\n" << log;
    EXPECT_EQ(line.find('\r'), std::string::npos) << log;
    if (line.find("FAKE LINE") != std::string::npos) {
      ++mentions;
    }
  }
  EXPECT_GE(mentions, 1u) << log;
}

INSTANTIATE_TEST_SUITE_P(Formats, LogInjection, ::testing::Values("text", "json"),
                         [](const auto& param_info) { return std::string(param_info.param); });

}  // namespace
}  // namespace pgwarden::fixture
