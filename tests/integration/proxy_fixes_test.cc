// Integration tests of the fixes of the adversarial review of 625b2f4 (issue 10), against
// real PostgreSQL 15 with libpq and the fixture's RawClient:
//  - C2: a client that sends Terminate before its StartupMessage, in its place, or at any
//    point of authentication is closed quietly (no ErrorResponse), with TLS on and off and
//    with scram, trust and passthrough; other bad first packets still get 08P01;
//  - L1: idle_in_transaction_timeout ends a session idle inside a transaction with 25P03,
//    never one whose statement runs, and never one idle outside a transaction;
//  - M1: a valid login of one user does not forgive failures against another;
//  - M2: parallel handshakes cannot get more password verdicts than the limit;
//  - cancel floods: CancelRequests beyond the per-address rate are dropped.
//
// One pgwarden process serves every test, one listener per situation (each listener has its
// own failure limiter).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "config/users_file.h"
#include "crypto/scram.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/raw_client.h"
#include "fixture/shared_suite.h"
#include "fixture/test_util.h"
#include "wire/backend.h"

namespace pgwarden::fixture {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kUpstreamPassword = "fixit-UpPw-Q7vL2mN9xK4tR8zWc";
constexpr std::string_view kAlicePassword = "fixit-Alice-H3pD8sY1fG6kJ0wQe";
constexpr std::string_view kVictimPassword = "fixit-Victim-B5nM2cX9vZ4tL7yRu";
constexpr std::string_view kWrongPassword = "fixit-Wrong-P1oI9uY8tR7eW6qAs";

struct Suite {
  std::string role;               // upstream role of the static backend
  std::string direct_role;        // a role the passthrough listener's clients log in as
  std::uint16_t trust = 0;        // tls=allow, trust
  std::uint16_t scram = 0;        // tls=require, scram
  std::uint16_t passthrough = 0;  // tls=allow, passthrough
  std::uint16_t txidle = 0;       // trust, idle_in_transaction_timeout = 1s
  std::uint16_t m1 = 0;           // scram, auth_failure_limit = 5 in 10 min
  std::uint16_t m2 = 0;           // scram, auth_failure_limit = 5 in 10 min
  std::uint16_t pool = 0;         // scram, auth_failure_limit = 5 in 10 min, never failed
  std::unique_ptr<PgwardenProcess> proxy;
};

class ProxyFixes : public SharedSuite<Suite, ProxyFixes> {
  friend class SharedSuite<Suite, ProxyFixes>;

 protected:
  static void build_suite(Suite& s) {
    PgCluster& pg = shared_cluster();
    s.role = unique_name("fixit_app");
    s.direct_role = unique_name("fixit_direct");
    pg.create_role(RoleSpec{s.role, AuthMethod::kScram, std::string(kUpstreamPassword), false, ""});
    pg.create_role(
        RoleSpec{s.direct_role, AuthMethod::kScram, std::string(kAlicePassword), true, ""});

    PgwardenOptions options;
    options.ports = distinct_ports(7);
    s.trust = options.ports[0];
    s.scram = options.ports[1];
    s.passthrough = options.ports[2];
    s.txidle = options.ports[3];
    s.m1 = options.ports[4];
    s.m2 = options.ports[5];
    s.pool = options.ports[6];
    options.config = config_text(s, pg);
    options.files.push_back(PgwardenFile{
        "users.txt", users_line("alice", kAlicePassword) + users_line("victim", kVictimPassword)});
    options.env = {{"FIXIT_UPSTREAM_PW", std::string(kUpstreamPassword)}};
    s.proxy = PgwardenProcess::start(options);
  }

  static std::string config_text(const Suite& s, const PgCluster& pg) {
    const auto& cert = pg.server_cert();
    const std::string tls_files =
        "tls_cert = " + toml_quote(cert.cert) + "\ntls_key = " + toml_quote(cert.key) + "\n";
    auto listener = [&](const std::string& name, std::uint16_t port, const std::string& backend,
                        const std::string& extra) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) + "\n" + extra + "\n";
    };
    const std::string scram =
        "tls = \"require\"\n" + tls_files + "auth = [\"scram\"]\nusers_file = \"users.txt\"\n";
    const std::string limited = scram + "auth_failure_limit = 5\nauth_failure_window = \"10m\"\n";
    const std::string pg_address = "localhost:" + std::to_string(pg.port());
    const std::string upstream_tls =
        "tls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) + "\n";

    std::string t = "[server]\nworkers = 2\nlog_level = \"debug\"\n\n";
    t += "[audit]\npath = \"@DIR@/audit.jsonl\"\n\n";
    t +=
        listener("trust", s.trust, "app", "tls = \"allow\"\n" + tls_files + "auth = [\"trust\"]\n");
    t += listener("scram", s.scram, "app", scram);
    t += listener("passthrough", s.passthrough, "direct",
                  "tls = \"allow\"\n" + tls_files + "auth = [\"passthrough\"]\n");
    t += listener("txidle", s.txidle, "app",
                  "tls = \"disable\"\nauth = [\"trust\"]\nidle_in_transaction_timeout = \"1s\"\n");
    t += listener("m1", s.m1, "app", limited);
    t += listener("m2", s.m2, "app", limited);
    t += listener("pool", s.pool, "app", limited);
    t += "[backend.app]\naddress = " + toml_quote(pg_address) + "\n" + upstream_tls +
         "credentials = \"static\"\nuser = " + toml_quote(s.role) +
         "\npassword = \"${FIXIT_UPSTREAM_PW}\"\n\n";
    t += "[backend.direct]\naddress = " + toml_quote(pg_address) + "\n" + upstream_tls +
         "credentials = \"passthrough\"\n\n";
    return t;
  }

  static PgCluster& pg() { return shared_cluster(); }
  static Suite& s() { return *s_; }

  static ConnInfo via(std::uint16_t port, const std::string& user, const std::string& password,
                      const std::string& sslmode) {
    ConnInfo ci = pg().conninfo(user, password, HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("sslmode", sslmode);
    ci.set("application_name", "proxy_fixes_test");
    return ci;
  }

  // A raw client on `port`, with TLS when asked (SSLRequest, then the handshake).
  static std::unique_ptr<RawClient> dial(std::uint16_t port, bool tls) {
    auto c = RawClient::dial("127.0.0.1", port);
    c->set_read_timeout(10s);
    if (tls) {
      c->write_ssl_request();
      auto answer = c->read_byte();
      if (!answer || *answer != 'S') {
        throw FixtureError("SSLRequest was not answered with S");
      }
      auto outcome = c->start_tls(TlsClientOptions{});
      if (!outcome.ok) {
        throw FixtureError("TLS handshake failed: " + outcome.error);
      }
    }
    return c;
  }

  // Reads until the peer closes; fails the test if anything at all arrives. A peer that
  // stays open past the read timeout makes read_message() throw (no hang).
  static void expect_quiet_close(RawClient& c, const std::string& what) {
    while (auto m = c.read_message()) {
      if (m->type == 'E') {
        auto e = wire::parse_error_response(m->body);
        ADD_FAILURE() << what << ": got an ErrorResponse: "
                      << (e ? std::string(e->sqlstate()) + " " + std::string(e->message())
                            : std::string("?"));
      } else {
        ADD_FAILURE() << what << ": got a message of type " << m->type;
      }
    }
    EXPECT_NE(c.close_reason(), CloseReason::kOpen) << what;
  }

  // A healthy session still works on the trust listener (nothing else was affected).
  static void expect_healthy() {
    auto out = try_connect(via(s().trust, "fixit", "", "disable"), 30s);
    ASSERT_TRUE(out.ok()) << out.error;
    EXPECT_EQ(query_value(out.conn.get(), "SELECT 1"), "1");
  }
};

// ---------------------------------------------------------------------------------------
// C2: connect and disconnect at once

TEST_F(ProxyFixes, TerminateInsteadOfStartupClosesQuietly) {
  for (bool tls : {false, true}) {
    for (std::uint16_t port : {s().trust, s().scram, s().passthrough}) {
      if (port == s().scram && !tls) {
        continue;  // tls = "require": a plaintext client gets 28000 after its startup
      }
      const std::string what =
          "port " + std::to_string(port) + (tls ? " with TLS" : " without TLS");
      auto c = dial(port, tls);
      c->write_terminate();
      expect_quiet_close(*c, what);
    }
  }
  expect_healthy();
}

TEST_F(ProxyFixes, TerminateBeforeStartupClosesQuietly) {
  for (bool tls : {false, true}) {
    auto c = dial(s().trust, tls);
    c->write_terminate();
    c->write_startup({{"user", "fixit"}, {"database", "postgres"}});
    expect_quiet_close(*c, tls ? "with TLS" : "without TLS");
  }
  expect_healthy();
}

// Terminate sent in two pieces ('X' first): still recognised, never "exceeds the size limit".
TEST_F(ProxyFixes, FragmentedTerminateClosesQuietly) {
  auto c = dial(s().trust, false);
  const std::byte x{'X'};
  c->write_raw(wire::Bytes(&x, 1));
  const std::byte rest[4] = {std::byte{0}, std::byte{0}, std::byte{0}, std::byte{4}};
  c->write_raw(wire::Bytes(rest, 4));
  expect_quiet_close(*c, "fragmented");
}

TEST_F(ProxyFixes, TerminateDuringScramClosesQuietly) {
  auto c = dial(s().scram, true);
  c->write_startup({{"user", "alice"}, {"database", "postgres"}});
  auto m = c->read_message();
  ASSERT_TRUE(m);
  ASSERT_EQ(m->type, 'R');  // AuthenticationSASL
  c->write_terminate();
  expect_quiet_close(*c, "after AuthenticationSASL");
  expect_healthy();
}

TEST_F(ProxyFixes, TerminateDuringPassthroughClosesQuietly) {
  for (bool tls : {false, true}) {
    auto c = dial(s().passthrough, tls);
    c->write_startup({{"user", s().direct_role}, {"database", "postgres"}});
    auto m = c->read_message();
    ASSERT_TRUE(m) << "no authentication request relayed";
    ASSERT_EQ(m->type, 'R');
    c->write_terminate();
    expect_quiet_close(*c, tls ? "passthrough with TLS" : "passthrough without TLS");
  }
  expect_healthy();
}

// Other bad first packets keep their 08P01.
TEST_F(ProxyFixes, OtherBadFirstPacketsStillGet08P01) {
  auto c = dial(s().trust, false);
  const std::byte bogus[5] = {std::byte{'Q'}, std::byte{0}, std::byte{0}, std::byte{0},
                              std::byte{4}};
  c->write_raw(wire::Bytes(bogus, 5));
  auto e = c->read_error();
  ASSERT_TRUE(e) << "no ErrorResponse";
  EXPECT_EQ(e->sqlstate, "08P01") << e->message;
}

// ---------------------------------------------------------------------------------------
// L1: idle_in_transaction_timeout

TEST_F(ProxyFixes, IdleInTransactionEndsWith25P03) {
  // An idle session outside a transaction on the same listener, opened first: it outlives
  // the one that is ended, whatever the timer does.
  auto outside = try_connect(via(s().txidle, "fixit", "", "disable"), 30s);
  ASSERT_TRUE(outside.ok()) << outside.error;

  auto c = RawClient::dial("127.0.0.1", s().txidle);
  c->set_read_timeout(30s);
  c->write_startup({{"user", "fixit"}, {"database", "postgres"}});
  ASSERT_TRUE(c->login_result().ready());
  auto begin = c->simple_query("BEGIN");
  ASSERT_TRUE(begin.ok());
  // A statement that runs longer than the timeout inside the transaction is not idle.
  auto sleep = c->simple_query("SELECT pg_sleep(1.5)");
  ASSERT_TRUE(sleep.ok()) << "a running statement was ended";
  // Now idle in the transaction: the FATAL arrives by itself.
  auto e = c->read_error();
  ASSERT_TRUE(e) << "no FATAL for an idle transaction";
  EXPECT_EQ(e->sqlstate, "25P03") << e->message;
  EXPECT_TRUE(contains(e->message, "idle-in-transaction timeout")) << e->message;
  EXPECT_TRUE(c->wait_closed(10s));

  EXPECT_EQ(query_value(outside.conn.get(), "SELECT 1"), "1");
}

// ---------------------------------------------------------------------------------------
// M1, M2: the failure limiter

TEST_F(ProxyFixes, ValidLoginDoesNotForgiveFailuresAgainstOtherUsers) {
  auto attempt = [](const std::string& user, std::string_view password) {
    return try_connect(via(s().m1, user, std::string(password), "require"), 30s);
  };
  for (int round = 0; round < 2; ++round) {
    if (round == 0) {
      for (int i = 0; i < 4; ++i) {
        auto out = attempt("victim", kWrongPassword);
        ASSERT_FALSE(out.ok());
        EXPECT_EQ(out.sqlstate, "28P01") << out.error;
      }
    }
    auto own = attempt("alice", kAlicePassword);
    if (round == 0) {
      ASSERT_TRUE(own.ok()) << own.error;  // 4 failures: not blocked yet
      auto fifth = attempt("victim", kWrongPassword);
      ASSERT_FALSE(fifth.ok());
      EXPECT_EQ(fifth.sqlstate, "28P01") << fifth.error;
    } else {
      // Five failures against victim stand, alice's success forgave none of them.
      ASSERT_FALSE(own.ok()) << "the address was not blocked after 5 failures";
      EXPECT_EQ(own.sqlstate, "28000") << own.error;
      EXPECT_TRUE(contains(own.error, "too many failed authentication attempts")) << own.error;
    }
  }
  auto victim = attempt("victim", kVictimPassword);
  ASSERT_FALSE(victim.ok());
  EXPECT_EQ(victim.sqlstate, "28000") << victim.error;
}

TEST_F(ProxyFixes, ParallelHandshakesGetNoMoreVerdictsThanTheLimit) {
  constexpr int kClients = 30;
  std::vector<std::string> states(kClients);
  std::latch start(kClients);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto out = try_connect(via(s().m2, "victim", std::string(kWrongPassword), "require"), 60s);
        states[i] = out.ok() ? "ok" : out.sqlstate;
      });
    }
  }
  const auto verdicts = std::count(states.begin(), states.end(), "28P01");
  const auto blocked = std::count(states.begin(), states.end(), "28000");
  EXPECT_LE(verdicts, 5) << "more password verdicts than auth_failure_limit";
  EXPECT_EQ(verdicts + blocked, kClients) << "unexpected outcomes";
}

// The limiter must not refuse a pool that opens many good connections at once.
TEST_F(ProxyFixes, ParallelGoodLoginsAreNotBlocked) {
  constexpr int kClients = 20;
  std::vector<std::string> errors(kClients);
  std::latch start(kClients);
  {
    std::vector<std::jthread> threads;
    for (int i = 0; i < kClients; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        auto out = try_connect(via(s().pool, "alice", std::string(kAlicePassword), "require"), 60s);
        errors[i] = out.ok() ? "" : out.error;
      });
    }
  }
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(errors[i], "") << "client " << i;
  }
}

// ---------------------------------------------------------------------------------------
// Cancel floods

TEST_F(ProxyFixes, CancelFloodIsRateLimited) {
  // Far more random cancel requests than the burst (50), as fast as one thread sends them.
  constexpr int kRequests = 300;
  for (int i = 0; i < kRequests; ++i) {
    auto c = RawClient::dial("127.0.0.1", s().trust);
    const std::byte secret[4] = {std::byte{0x5a}, std::byte{static_cast<unsigned char>(i)},
                                 std::byte{0x11}, std::byte{0x22}};
    c->write_cancel(0x7f000000u + static_cast<std::uint32_t>(i), wire::Bytes(secret, 4));
    c->wait_closed(10s);
  }
  EXPECT_TRUE(wait_until([] { return contains(s().proxy->log(), "dropped: rate limit"); }, 10s))
      << "no cancel request was dropped by the rate limit";
  expect_healthy();
}

// ---------------------------------------------------------------------------------------
// L3: SCRAM's server-first message does not tell unknown users from real ones

// The server-first message pgwarden sends for `user` (SCRAM over TLS, a fixed client nonce):
// "r=...,s=<salt>,i=<iterations>". The connection is dropped right after.
std::string server_first_for(std::uint16_t port, const std::string& user) {
  auto c = RawClient::dial("127.0.0.1", port);
  c->set_read_timeout(10s);
  c->write_ssl_request();
  auto answer = c->read_byte();
  if (!answer || *answer != 'S' || !c->start_tls(TlsClientOptions{}).ok) {
    throw FixtureError("no TLS");
  }
  c->write_startup({{"user", user}, {"database", "postgres"}});
  auto sasl = c->read_or_throw();  // AuthenticationSASL
  const std::string client_first = "n,,n=,r=fixitNonce0123456789abcd";
  std::string body = std::string("SCRAM-SHA-256") + '\0';
  const std::uint32_t n = static_cast<std::uint32_t>(client_first.size());
  body += static_cast<char>(n >> 24);
  body += static_cast<char>(n >> 16);
  body += static_cast<char>(n >> 8);
  body += static_cast<char>(n);
  body += client_first;
  c->write_message('p', body);
  auto cont = c->read_or_throw();  // AuthenticationSASLContinue: int32 11, then the message
  if (cont.type != 'R' || cont.body.size() < 4) {
    throw FixtureError("no SASLContinue");
  }
  return std::string(reinterpret_cast<const char*>(cont.body.data()) + 4, cont.body.size() - 4);
}

std::string field_of(const std::string& server_first, char name) {
  const std::string key = std::string(1, name) + "=";
  auto at = server_first.find("," + key);
  if (at == std::string::npos) {
    return "";
  }
  at += key.size() + 1;
  return server_first.substr(at, server_first.find(',', at) - at);
}

TEST(ProxyFixesScram, UnknownUsersLookLikeRealOnesAcrossRestarts) {
  PgCluster& pg = shared_cluster();
  const auto& cert = pg.server_cert();
  const std::string users = users_line("alice", kAlicePassword, 8192);
  auto start = [&](std::uint16_t port) {
    PgwardenOptions options;
    options.ports = {port};
    options.config =
        "[[listener]]\nname = \"s\"\nlisten = " +
        toml_quote("127.0.0.1:" + std::to_string(options.ports[0])) +
        "\nbackend = \"app\"\ntls = \"require\"\ntls_cert = " + toml_quote(cert.cert) +
        "\ntls_key = " + toml_quote(cert.key) +
        "\nauth = [\"scram\"]\nusers_file = \"users.txt\"\n\n[backend.app]\naddress = " +
        toml_quote("localhost:" + std::to_string(pg.port())) +
        "\ntls = \"disable\"\ncredentials = \"static\"\nuser = \"x\"\npassword = \"x\"\n";
    options.files.push_back(PgwardenFile{"users.txt", users});
    return PgwardenProcess::start(options);
  };
  std::string real;
  std::string unknown;
  std::string other;
  {
    const auto port = pick_free_port();
    auto proxy = start(port);
    real = server_first_for(port, "alice");
    unknown = server_first_for(port, "mallory");
    other = server_first_for(port, "trudy");
  }
  EXPECT_EQ(field_of(real, 'i'), "8192");
  EXPECT_EQ(field_of(unknown, 'i'), "8192") << "unknown users show another iteration count";
  EXPECT_EQ(field_of(unknown, 's').size(), field_of(real, 's').size());
  EXPECT_NE(field_of(unknown, 's'), field_of(other, 's'));
  // After a restart a real user's salt is the same, and so is an unknown user's.
  const auto port = pick_free_port();
  auto proxy = start(port);
  EXPECT_EQ(field_of(server_first_for(port, "alice"), 's'), field_of(real, 's'));
  EXPECT_EQ(field_of(server_first_for(port, "mallory"), 's'), field_of(unknown, 's'))
      << "an unknown user's salt changed across a restart";
}

// ---------------------------------------------------------------------------------------
// Secrets left in memory

// How often `needle` occurs in the writable memory of process `pid` (heap, stacks, anonymous
// mappings; mappings over 1 GiB, i.e. sanitizer shadow reservations, are skipped).
int occurrences_in_memory(pid_t pid, std::string_view needle) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (!maps || fd < 0) {
    throw FixtureError("cannot read the memory of process " + std::to_string(pid));
  }
  int found = 0;
  std::string line;
  std::vector<char> buf(1 << 20);
  while (std::getline(maps, line)) {
    unsigned long long start = 0;
    unsigned long long end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%llx-%llx %4s", &start, &end, perms) != 3 || perms[0] != 'r' ||
        perms[1] != 'w' || end - start > (1ull << 30)) {
      continue;
    }
    std::string carry;
    for (unsigned long long at = start; at < end;) {
      const auto want =
          static_cast<std::size_t>(std::min<unsigned long long>(buf.size(), end - at));
      const auto got = ::pread(fd, buf.data(), want, static_cast<off_t>(at));
      if (got <= 0) {
        break;
      }
      std::string chunk = carry + std::string(buf.data(), static_cast<std::size_t>(got));
      for (auto pos = chunk.find(needle); pos != std::string::npos;
           pos = chunk.find(needle, pos + 1)) {
        ++found;
      }
      carry =
          chunk.size() >= needle.size() ? chunk.substr(chunk.size() - needle.size() + 1) : chunk;
      at += static_cast<unsigned long long>(got);
    }
  }
  ::close(fd);
  return found;
}

// A password pgwarden handled itself (passthrough, both legs TLS: SCRAM-SHA-256-PLUS upstream
// with the client's password) is nowhere in pgwarden's memory once the login has failed:
// not in its buffers, not in OpenSSL's record buffer, not in memory it freed.
TEST_F(ProxyFixes, PasswordIsWipedFromMemoryAfterAFailedLogin) {
  auto ended = [] {
    const std::string log = s().proxy->log();
    int n = 0;
    for (auto pos = log.find("startup ended (refused)"); pos != std::string::npos;
         pos = log.find("startup ended (refused)", pos + 1)) {
      ++n;
    }
    return n;
  };
  const int ended_before = ended();
  const std::string password = "fixit-Scan-" + unique_name("pw");
  auto out = try_connect(via(s().passthrough, s().direct_role, password, "require"), 30s);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.sqlstate, "28P01") << out.error;
  // pgwarden logs the end of the session's startup once every path out of it has run.
  ASSERT_TRUE(wait_until([&] { return ended() > ended_before; }, 10s));
  EXPECT_EQ(occurrences_in_memory(s().proxy->pid(), password), 0)
      << "the password is still in pgwarden's memory";
  // The scan itself works: a string pgwarden holds (its own listener name) is found.
  EXPECT_GT(occurrences_in_memory(s().proxy->pid(), "passthrough"), 0);
}

// ---------------------------------------------------------------------------------------
// C1: the PID a client sees is the server's

TEST_F(ProxyFixes, ReportedPidIsTheServersOwn) {
  auto a = try_connect(via(s().trust, "fixit", "", "require"), 30s);
  auto b = try_connect(via(s().trust, "fixit", "", "require"), 30s);
  ASSERT_TRUE(a.ok() && b.ok()) << a.error << b.error;
  const int pid_a = PQbackendPID(a.conn.get());
  EXPECT_EQ(query_value(a.conn.get(), "SELECT pg_backend_pid()"), std::to_string(pid_a));

  // NOTIFY: a client that ignores its own notifications compares be_pid with its PID.
  ASSERT_TRUE(run_query(a.conn.get(), "LISTEN fixit_channel").ok());
  ASSERT_TRUE(run_query(a.conn.get(), "NOTIFY fixit_channel, 'hello'").ok());
  PQconsumeInput(a.conn.get());
  PGnotify* n = PQnotifies(a.conn.get());
  ASSERT_NE(n, nullptr) << "no notification";
  EXPECT_EQ(n->be_pid, pid_a);
  EXPECT_STREQ(n->extra, "hello");
  PQfreemem(n);

  // The admin idiom: terminate another connection by the PID it reports.
  EXPECT_EQ(
      query_value(b.conn.get(), "SELECT pg_terminate_backend($1::int)", {std::to_string(pid_a)}),
      "t");
  auto after = run_query(a.conn.get(), "SELECT 1");
  EXPECT_FALSE(after.ok()) << "the terminated session still answers";
  EXPECT_EQ(query_value(b.conn.get(), "SELECT 1"), "1");
}

// Cancel still works with the real PID: the request is routed by (PID, pgwarden's secret).
TEST_F(ProxyFixes, CancelWithTheRealPidReachesTheServer) {
  auto a = try_connect(via(s().trust, "fixit", "", "disable"), 30s);
  ASSERT_TRUE(a.ok()) << a.error;
  ASSERT_EQ(PQsendQuery(a.conn.get(), "SELECT pg_sleep(60)"), 1);
  ASSERT_TRUE(wait_until(
      [&] {
        return pg().query_value(
                   "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                   "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()") != "0";
      },
      15s));
  PGcancel* cancel = PQgetCancel(a.conn.get());
  ASSERT_NE(cancel, nullptr);
  char err[256] = {};
  EXPECT_EQ(PQcancel(cancel, err, sizeof err), 1) << err;
  PQfreeCancel(cancel);
  PGresult* r = PQgetResult(a.conn.get());
  ASSERT_NE(r, nullptr);
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  EXPECT_STREQ(state != nullptr ? state : "", "57014");  // query_canceled
  PQclear(r);
  while ((r = PQgetResult(a.conn.get())) != nullptr) {
    PQclear(r);
  }
}

}  // namespace
}  // namespace pgwarden::fixture
