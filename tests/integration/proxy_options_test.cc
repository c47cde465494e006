// Integration tests of the client's startup `options` through pgwarden, against real
// PostgreSQL 15 with libpq and the fixture's RawClient:
//  - the same harmless `options` (escapes, odd whitespace, bundled letters such as -ec and
//    -e-, --name-with-dashes=value, letters that set settings like -S and -f) sent once
//    straight to PostgreSQL and once through pgwarden give the same SHOW results, and options
//    that PostgreSQL refuses are refused through pgwarden too;
//  - every spelling of a setting pgwarden controls (default_transaction_read_only,
//    transaction_read_only, role, session_authorization, pgwarden.* but pgwarden.preset), in
//    `options` or as a bare startup parameter, gets FATAL 42501 from pgwarden, and pgwarden
//    never opens a connection upstream for it: the listener used for this has a backend that
//    is a bare TCP listener of this file, whose pending connections the test counts. Sent
//    straight to PostgreSQL, the same spellings do set default_transaction_read_only, which
//    is what makes them dangerous.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/shared_suite.h"
#include "fixture/test_util.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;

// The upstream role's password: only pgwarden and the direct connections know it.
constexpr std::string_view kUpstreamPassword = "optit-UpPw-Q8vL3mZ6tX1cR9wKe";

// A TCP listener on 127.0.0.1 that never accepts by itself: connections made to it wait in
// the backlog, and pending() takes and counts them. A connect() returns once the kernel has
// queued the connection, so after pgwarden has answered a client, any upstream connection it
// made for that client is already countable: no waiting, no race.
class CountingListener {
 public:
  CountingListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (fd_ >= 0) {
        ::close(fd_);
      }
      throw FixtureError("counting listener: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  CountingListener(const CountingListener&) = delete;
  CountingListener& operator=(const CountingListener&) = delete;
  ~CountingListener() { ::close(fd_); }

  std::uint16_t port() const { return port_; }

  // Accepts (and closes) every connection waiting now; returns how many there were.
  int pending() {
    int n = 0;
    for (;;) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR) {
          continue;
        }
        return n;  // EAGAIN: none left
      }
      ::close(c);
      ++n;
    }
  }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

struct Suite {
  std::string role;  // upstream role, for pgwarden (static credentials) and direct connections
  std::unique_ptr<CountingListener> probe;
  std::uint16_t plain = 0;  // trust listener, backend: the shared cluster
  std::uint16_t guard = 0;  // trust listener, backend: the counting listener
  std::unique_ptr<PgwardenProcess> proxy;
};

class ProxyOptions : public SharedSuite<Suite, ProxyOptions> {
  friend class SharedSuite<Suite, ProxyOptions>;  // calls build_suite

 protected:
  static void build_suite(Suite& s) {
    PgCluster& pg = shared_cluster();
    s.role = unique_name("optit_app");
    pg.create_role(RoleSpec{s.role, AuthMethod::kScram, std::string(kUpstreamPassword), false, ""});
    s.probe = std::make_unique<CountingListener>();

    PgwardenOptions options;
    s.plain = pick_free_port();
    do {
      s.guard = pick_free_port();
    } while (s.guard == s.plain);
    options.ports = {s.plain, s.guard};
    auto listener = [](const std::string& name, std::uint16_t port, const std::string& backend) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) + "\ntls = \"disable\"\nauth = [\"trust\"]\n\n";
    };
    std::string t = "[server]\nworkers = 1\nlog_level = \"debug\"\n\n";
    t += listener("plain", s.plain, "app");
    t += listener("guard", s.guard, "probe");
    t += "[backend.app]\naddress = " + toml_quote("localhost:" + std::to_string(pg.port())) +
         "\ntls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) +
         "\ncredentials = \"static\"\nuser = " + toml_quote(s.role) +
         "\npassword = \"${OPTIT_UPSTREAM_PW}\"\n\n";
    t +=
        "[backend.probe]\naddress = " + toml_quote("127.0.0.1:" + std::to_string(s.probe->port())) +
        "\ntls = \"disable\"\ncredentials = \"static\"\nuser = " + toml_quote(s.role) +
        "\npassword = \"${OPTIT_UPSTREAM_PW}\"\n\n";
    options.config = t;
    options.env = {{"OPTIT_UPSTREAM_PW", std::string(kUpstreamPassword)}};
    s.proxy = PgwardenProcess::start(options);
  }

  static PgCluster& pg() { return shared_cluster(); }
  static Suite& s() { return *s_; }

  // Straight to PostgreSQL as the upstream role (TLS, SCRAM).
  static ConnInfo direct(const std::string& options) {
    ConnInfo ci = pg().conninfo(s().role, std::string(kUpstreamPassword), HostForm::kIpv4);
    ci.set("options", options);
    return ci;
  }
  // Through a pgwarden trust listener.
  static ConnInfo via(std::uint16_t port, const std::string& options) {
    ConnInfo ci = pg().conninfo("optit", "", HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("sslmode", "disable");
    ci.set("options", options);
    return ci;
  }
};

// The settings the harmless cases touch, as SHOW reports them.
std::vector<std::string> shown(PGconn* conn) {
  std::vector<std::string> out;
  for (const char* name :
       {"work_mem", "statement_timeout", "search_path", "DateStyle", "geqo", "enable_seqscan",
        "enable_hashjoin", "extra_float_digits", "lock_timeout", "application_name"}) {
    out.push_back(std::string(name) + "=" + query_value(conn, std::string("SHOW ") + name));
  }
  return out;
}

TEST_F(ProxyOptions, HarmlessOptionsGiveTheSameSettingsAsStraightToPostgres) {
  for (
      const std::string options : {
          R"(-c work_mem=7MB -e --statement-timeout=1234 -c search_path=a\,b)",
          R"(-ec work_mem=3MB)",
          R"(-ecwork_mem=3MB -e-statement_timeout=99)",
          R"(-e- lock_timeout=5s -fs -fhashjoin)",
          "-S 2MB\t-c\nlock_timeout=5s \r\f\v ",
          R"(-c search_path="a\ b",c --extra-float-digits=2 --GEQO=off -c application_name=x\\y\ z)",
          R"(-c DateStyle=German -e)",
          R"(\-\e\c w\ork_mem=1MB)",
          R"(-c search_path=x\)",  // a trailing backslash is dropped
          R"(-ec pgwarden.preset=readonly -c work_mem=5MB)",
          R"(-c work_mem=6MB --)",
          R"(-c work_mem=6MB -C ignored -n -T)",
      }) {
    SCOPED_TRACE(options);
    auto straight = try_connect(direct(options), 30s);
    ASSERT_TRUE(straight.ok()) << straight.error;
    auto proxied = try_connect(via(s().plain, options), 30s);
    ASSERT_TRUE(proxied.ok()) << proxied.error;
    EXPECT_EQ(shown(proxied.conn.get()), shown(straight.conn.get()));
    // The preset is pgwarden's: the server never sees it.
    EXPECT_FALSE(query_rows(proxied.conn.get(), "SELECT current_setting('pgwarden.preset', true)")
                     .at(0)
                     .at(0)
                     .has_value());
  }
}

TEST_F(ProxyOptions, OptionsPostgresRefusesAreRefusedThroughPgwarden) {
  // Forwarded, and refused by the server itself: the same SQLSTATE both ways.
  for (const std::string options : {
           "-c no_such_setting=1",  // 42704
           R"(-c\ geqo=off)",       // one word: the setting " geqo", 42704
           "-d 1",                  // log_min_messages needs a superuser: 42501
           "-B 10",                 // shared_buffers only at server start: 55P02
       }) {
    SCOPED_TRACE(options);
    auto straight = try_connect(direct(options), 30s);
    ASSERT_FALSE(straight.ok());
    auto proxied = try_connect(via(s().plain, options), 30s);
    ASSERT_FALSE(proxied.ok());
    EXPECT_FALSE(straight.sqlstate.empty()) << straight.error;
    EXPECT_EQ(proxied.sqlstate, straight.sqlstate) << proxied.error;
  }
  // Refused by pgwarden already (22023), where the server says 42601.
  for (const std::string options :
       {"-c", "-c work_mem=1MB -c", "-x", "work_mem=1MB", "--work_mem 1MB", "-c work_mem", "-fx",
        "-- -c work_mem=1MB", "-ec"}) {
    SCOPED_TRACE(options);
    auto straight = try_connect(direct(options), 30s);
    ASSERT_FALSE(straight.ok());
    EXPECT_EQ(straight.sqlstate, "42601") << straight.error;
    auto proxied = try_connect(via(s().guard, options), 30s);
    ASSERT_FALSE(proxied.ok());
    EXPECT_EQ(proxied.sqlstate, "22023") << proxied.error;
    EXPECT_EQ(s().probe->pending(), 0) << "pgwarden went upstream";
  }
}

// Spellings of a controlled setting inside `options`, with the canonical name.
struct Spelling {
  std::string options;
  std::string name;
};

std::vector<Spelling> option_spellings(const std::string& value) {
  const std::string dtro = "default_transaction_read_only";
  return {
      {"-c default_transaction_read_only=" + value, dtro},
      {"--default-transaction-read-only=" + value, dtro},
      {"-c DEFAULT_TRANSACTION_READ_ONLY=" + value, dtro},
      {"-cdefault_transaction_read_only=" + value, dtro},
      {"-ec default_transaction_read_only=" + value, dtro},
      {"-ecdefault-transaction-read-only=" + value, dtro},
      {"-e-default_transaction_read_only=" + value, dtro},
      {"-e- Default-Transaction-Read-Only=" + value, dtro},
      {"-e -c default_transaction_read_only=" + value, dtro},
      {"-c work_mem=1MB\t-c\ndefault_transaction_read_only=" + value, dtro},
      {R"(-c defa\ult_transaction_read_o\nly=)" + value, dtro},
      {R"(\-\c default_transaction_read_only=)" + value, dtro},
  };
}

TEST_F(ProxyOptions, EachSpellingSetsTheSettingStraightToPostgres) {
  // What pgwarden must catch: each of these really sets the setting on the server.
  for (const auto& sp : option_spellings("on")) {
    SCOPED_TRACE(sp.options);
    auto straight = try_connect(direct(sp.options), 30s);
    ASSERT_TRUE(straight.ok()) << straight.error;
    EXPECT_EQ(query_value(straight.conn.get(), "SHOW " + sp.name), "on");
  }
}

TEST_F(ProxyOptions, ControlledSettingsInOptionsAreRefusedBeforeTheServer) {
  auto spellings = option_spellings("off");
  for (const auto& extra : std::vector<Spelling>{
           {"-c transaction_read_only=off", "transaction_read_only"},
           {"--Transaction-Read-Only=off", "transaction_read_only"},
           {"--role=postgres", "role"},
           {"-ec ROLE=postgres", "role"},
           {"-c session_authorization=postgres", "session_authorization"},
           {"-e-session-authorization=postgres", "session_authorization"},
           {"-ec pgwarden.identity=mallory", "pgwarden.identity"},
           {"--PGWARDEN.groups=admins", "pgwarden.groups"},
           {"-c pgwarden.method=cert", "pgwarden.method"},
           {"-c pgwarden.preset=readonly -c role=postgres", "role"},
       }) {
    spellings.push_back(extra);
  }
  for (const auto& sp : spellings) {
    SCOPED_TRACE(sp.options);
    auto out = try_connect(via(s().guard, sp.options), 30s);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.sqlstate, "42501") << out.error;
    EXPECT_TRUE(contains(out.error, "FATAL")) << out.error;
    EXPECT_TRUE(contains(out.error, "permission denied to set parameter \"" + sp.name + "\""))
        << out.error;
    EXPECT_EQ(s().probe->pending(), 0) << "pgwarden went upstream";
  }
  // The same through the listener whose backend is the real server.
  auto out = try_connect(via(s().plain, "-ec default_transaction_read_only=off"), 30s);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.sqlstate, "42501") << out.error;
}

TEST_F(ProxyOptions, ControlledSettingsAsStartupParametersAreRefusedBeforeTheServer) {
  for (const auto& [param, name] : std::vector<std::pair<std::string, std::string>>{
           {"default_transaction_read_only", "default_transaction_read_only"},
           {"Default_Transaction_Read_Only", "default_transaction_read_only"},
           {"transaction_read_only", "transaction_read_only"},
           {"role", "role"},
           {"ROLE", "role"},
           {"session_authorization", "session_authorization"},
           {"pgwarden.identity", "pgwarden.identity"},
           {"PGWARDEN.Groups", "pgwarden.groups"},
       }) {
    SCOPED_TRACE(param);
    auto c = RawClient::dial("127.0.0.1", s().guard);
    c->write_startup({{"user", "optit"}, {"database", "postgres"}, {param, "off"}});
    LoginResult login = c->login_result();
    EXPECT_FALSE(login.authenticated);
    ASSERT_TRUE(login.error.has_value());
    EXPECT_EQ(login.error->severity, "FATAL");
    EXPECT_EQ(login.error->sqlstate, "42501");
    EXPECT_EQ(login.error->message, "permission denied to set parameter \"" + name + "\"");
    EXPECT_TRUE(c->wait_closed(10s));
    EXPECT_EQ(s().probe->pending(), 0) << "pgwarden went upstream";
  }
}

}  // namespace
}  // namespace pgwarden::fixture
