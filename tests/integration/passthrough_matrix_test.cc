// Passthrough authentication with the default settings of libpq, in every combination
// (issue 10, P1): client TLS on/off x upstream TLS on/off x the server's method scram / md5 /
// password x libpq channel_binding disable / prefer / require.
//
// The finding: pgwarden hides SCRAM-SHA-256-PLUS from the client (the client's TLS ends at
// pgwarden), libpq then sends the gs2 flag "y", and a server that offers -PLUS over its own
// TLS rejects the relayed exchange as a downgrade attack. pgwarden now takes the password
// inside the client's TLS when the upstream offers -PLUS, and runs SCRAM-SHA-256-PLUS upstream
// itself. Expected outcomes:
//  - channel_binding=require never works through a TLS-terminating proxy (libpq refuses
//    anything but -PLUS, and the client cannot bind to the upstream's certificate): the
//    documented trade-off; such clients use the scram method with a users file;
//  - a cleartext password (the server's `password` method) is relayed only when both legs
//    use TLS, else FATAL 08006;
//  - everything else logs in as the role, and the server's own verdict on a wrong password
//    reaches the client.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/shared_suite.h"
#include "fixture/test_util.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kPassword = "ptmx-Role-Pw-W8kL3nB6vC1xZ9qT";
constexpr std::string_view kWrongPassword = "ptmx-Wrong-Pw-Y2hG7fD4sA0pO5iU";

struct Suite {
  std::string scram_role;
  std::string md5_role;
  std::string password_role;
  std::uint16_t tls_upstream = 0;    // backend tls = verify-full
  std::uint16_t plain_upstream = 0;  // backend tls = disable
  std::unique_ptr<PgwardenProcess> proxy;
};

class PassthroughMatrix : public SharedSuite<Suite, PassthroughMatrix> {
  friend class SharedSuite<Suite, PassthroughMatrix>;

 protected:
  static void build_suite(Suite& s) {
    PgCluster& pg = shared_cluster();
    s.scram_role = unique_name("ptmx_scram");
    s.md5_role = unique_name("ptmx_md5");
    s.password_role = unique_name("ptmx_password");
    const std::string pw(kPassword);
    // `host` lines: the roles may log in with and without TLS (upstream TLS is the variable).
    pg.create_roles({RoleSpec{s.scram_role, AuthMethod::kScram, pw, true, ""},
                     RoleSpec{s.md5_role, AuthMethod::kMd5, pw, true, ""},
                     RoleSpec{s.password_role, AuthMethod::kPassword, pw, true, ""}});

    const auto& cert = pg.server_cert();
    PgwardenOptions options;
    s.tls_upstream = pick_free_port();
    do {
      s.plain_upstream = pick_free_port();
    } while (s.plain_upstream == s.tls_upstream);
    options.ports = {s.tls_upstream, s.plain_upstream};
    const std::string pg_address = "localhost:" + std::to_string(pg.port());
    auto listener = [&](const std::string& name, std::uint16_t port, const std::string& backend) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) +
             "\ntls = \"allow\"\ntls_cert = " + toml_quote(cert.cert) +
             "\ntls_key = " + toml_quote(cert.key) +
             "\nauth = [\"passthrough\"]\nauth_failure_limit = 0\n\n";
    };
    std::string t = "[server]\nworkers = 2\n\n";
    t += listener("tls_up", s.tls_upstream, "tls_up");
    t += listener("plain_up", s.plain_upstream, "plain_up");
    t += "[backend.tls_up]\naddress = " + toml_quote(pg_address) +
         "\ntls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) +
         "\ncredentials = \"passthrough\"\n\n";
    t += "[backend.plain_up]\naddress = " + toml_quote(pg_address) +
         "\ntls = \"disable\"\ncredentials = \"passthrough\"\n\n";
    options.config = t;
    s.proxy = PgwardenProcess::start(options);
  }

  static Suite& s() { return *s_; }

  static ConnInfo via(std::uint16_t port, const std::string& role, std::string_view password,
                      bool client_tls, const std::string& channel_binding) {
    ConnInfo ci = shared_cluster().conninfo(role, std::string(password), HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("sslmode", client_tls ? "require" : "disable");
    ci.set("channel_binding", channel_binding);
    ci.set("application_name", "passthrough_matrix_test");
    return ci;
  }
};

TEST_F(PassthroughMatrix, EveryCombination) {
  int cells = 0;
  for (bool client_tls : {false, true}) {
    for (bool upstream_tls : {false, true}) {
      for (const std::string method : {"scram", "md5", "password"}) {
        for (const std::string cb : {"disable", "prefer", "require"}) {
          const std::string& role = method == "scram" ? s().scram_role
                                    : method == "md5" ? s().md5_role
                                                      : s().password_role;
          const auto port = upstream_tls ? s().tls_upstream : s().plain_upstream;
          const std::string cell = std::string("client TLS ") + (client_tls ? "on" : "off") +
                                   ", upstream TLS " + (upstream_tls ? "on" : "off") + ", " +
                                   method + ", channel_binding=" + cb;
          SCOPED_TRACE(cell);
          ++cells;
          auto out = try_connect(via(port, role, kPassword, client_tls, cb), 30s);
          if (cb == "require") {
            // The documented trade-off: never through a TLS-terminating proxy.
            EXPECT_FALSE(out.ok()) << "channel_binding=require logged in";
            continue;
          }
          if (method == "password" && !(client_tls && upstream_tls)) {
            ASSERT_FALSE(out.ok()) << "a cleartext password was relayed without TLS on both legs";
            EXPECT_EQ(out.sqlstate, "08006") << out.error;
            continue;
          }
          ASSERT_TRUE(out.ok()) << out.error;
          EXPECT_EQ(query_value(out.conn.get(), "SELECT current_user"), role);
          // The upstream leg is what the backend says: TLS or not.
          EXPECT_EQ(query_value(out.conn.get(),
                                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
                    upstream_tls ? "t" : "f");
        }
      }
    }
  }
  EXPECT_EQ(cells, 36);
}

// The exchange pgwarden runs for the client (both legs TLS, -PLUS upstream): a wrong password
// gets the server's own verdict, 28P01.
TEST_F(PassthroughMatrix, WrongPasswordGetsTheServersVerdict) {
  for (bool client_tls : {false, true}) {
    SCOPED_TRACE(client_tls ? "client TLS" : "client plaintext");
    auto out = try_connect(
        via(s().tls_upstream, s().scram_role, kWrongPassword, client_tls, "prefer"), 30s);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.sqlstate, "28P01") << out.error;
    EXPECT_TRUE(contains(out.error, "password authentication failed")) << out.error;
  }
}

}  // namespace
}  // namespace pgwarden::fixture
