// Integration tests of the session behaviours of pgwarden that the other proxy test files do
// not cover (issue 3: identity rate limiting, upstream TLS modes and client certificates,
// upstream failure mid-session, idle timeout, startup options, cancel across instances,
// protocol 3.2), against real PostgreSQL 15 with libpq and the fixture's RawClient:
//  - repeated authentication failures from one address are refused with 28000 once
//    auth_failure_limit is reached, the block lifts when auth_failure_window has passed, and
//    another listener (its own limiter) is unaffected meanwhile;
//  - upstream tls = "verify-ca" verifies the chain but not the name; a wrong CA is 08006;
//  - an upstream client certificate logs pgwarden in to a role with `cert` authentication
//    (a private cluster, because the shared one has no ssl_ca_file);
//  - the server's own FATAL (pg_terminate_backend) reaches the client unchanged, and an
//    upstream connection cut without a message (a TCP relay in this file) becomes FATAL
//    08006: never a hang;
//  - idle_timeout ends an idle session with 57P05 but never one whose query is running;
//  - the pgwarden.preset startup setting is taken out of what goes upstream, validated
//    (22023), and other -c options still reach the server;
//  - a CancelRequest sent to a peer instance is forwarded to the owning instance;
//  - a client asking for protocol 3.2 is told 3.0 (what PostgreSQL 15 speaks) and gets a
//    4-byte cancel secret.
//
// One pgwarden process serves most tests (one listener per situation). The client
// certificate test and the two-instance cancel test start their own, because they need a
// private cluster and a [cluster] section. Secrets are distinctive constants (kUpstreamPassword,
// kAlicePassword) that reach pgwarden only through the environment or a users file, so a scan
// of logs and audit files can look for them.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "config/users_file.h"
#include "crypto/scram.h"
#include "fixture/certs.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/shared_suite.h"
#include "fixture/temp_dir.h"
#include "fixture/test_util.h"
#include "wire/backend.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The upstream role's password: only pgwarden knows it (static credentials).
constexpr std::string_view kUpstreamPassword = "sessit-UpPw-R4vN8kQ2xW7mT1zLc";
// alice's password in the users file of the rate-limited listeners.
constexpr std::string_view kAlicePassword = "sessit-Alice-J6pB3sY9dF0hK5wGq";
constexpr std::string_view kWrongPassword = "sessit-Wrong-M2cX8nV4bZ7tR1yEu";

ServerError error_of(const Message& m) {
  auto parsed = wire::parse_error_response(m.body);
  if (!parsed) {
    throw FixtureError("undecodable ErrorResponse");
  }
  return to_server_error(*parsed);
}

// Every message the peer sends until it ends the connection. A peer that stays open past the
// read timeout makes this throw (the test fails instead of hanging).
std::vector<Message> read_until_closed(RawClient& c) {
  std::vector<Message> out;
  while (auto m = c.read_message()) {
    out.push_back(std::move(*m));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> startup(const std::string& user) {
  return {{"user", user}, {"database", "postgres"}, {"application_name", "proxy_session_test"}};
}

// A plaintext RawClient session through a trust listener; fails the test unless ready.
std::unique_ptr<RawClient> raw_login(std::uint16_t port, LoginResult* result = nullptr,
                                     std::uint16_t minor = 0) {
  auto c = RawClient::dial("127.0.0.1", port);
  c->write_startup(startup("sessit"), 3, minor);
  LoginResult login = c->login_result();
  if (!login.ready()) {
    throw FixtureError("login through port " + std::to_string(port) + " failed: " +
                       (login.error ? login.error->sqlstate + " " + login.error->message
                                    : std::string("not ready")));
  }
  if (result != nullptr) {
    *result = std::move(login);
  }
  return c;
}

// Waits until the cluster runs an active statement whose text contains `marker`.
bool wait_query_active(PgCluster& pg, const std::string& marker,
                       std::chrono::milliseconds timeout = 15s) {
  return wait_until(
      [&] {
        return pg.query_value(
                   "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
                   "AND pid <> pg_backend_pid()",
                   {"%" + marker + "%"}) != "0";
      },
      timeout);
}

// Ends any backend still running a statement with `marker` (cleanup after a cut connection).
void terminate_marked(PgCluster& pg, const std::string& marker) {
  pg.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE $1 "
      "AND pid <> pg_backend_pid()",
      {"%" + marker + "%"});
}

// ---------------------------------------------------------------------------------------
// A TCP relay between pgwarden and PostgreSQL that the test can cut: every connection it
// accepts on 127.0.0.1 is joined to a fresh connection to the target port, bytes are copied
// both ways unchanged (TLS passes through), and cut_all() closes every pair at once with a
// TCP reset on pgwarden's side: the upstream dies without a message, as when a server host
// or a network path fails.

class CuttableRelay {
 public:
  explicit CuttableRelay(std::uint16_t target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 ||
        ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (listen_fd_ >= 0) {
        ::close(listen_fd_);
      }
      throw FixtureError("relay: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::jthread([this](std::stop_token st) { loop(st); });
  }
  CuttableRelay(const CuttableRelay&) = delete;
  CuttableRelay& operator=(const CuttableRelay&) = delete;
  ~CuttableRelay() {
    thread_.request_stop();
    thread_.join();
    for (auto& p : pairs_) {
      close_pair(p, false);
    }
    ::close(listen_fd_);
  }

  std::uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }
  int open_pairs() const { return open_pairs_; }

  // Closes every relayed connection (a reset towards pgwarden, a close towards the server);
  // returns once the relay thread has done it, or throws after 10 s.
  void cut_all() {
    const int target = ++cut_requested_;
    if (!wait_until([&] { return cut_done_ >= target; }, 10s)) {
      throw FixtureError("relay: cut_all() was not carried out");
    }
  }

 private:
  struct Pair {
    int down = -1;  // pgwarden's side
    int up = -1;    // PostgreSQL's side
  };

  static bool send_all(int fd, const char* data, std::size_t n) {
    while (n > 0) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 5000) <= 0) {
        return false;
      }
      const auto w = ::send(fd, data, n, MSG_NOSIGNAL);
      if (w <= 0) {
        return false;
      }
      data += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  void close_pair(Pair& p, bool reset_down) {
    if (p.down >= 0) {
      if (reset_down) {
        linger l{1, 0};  // close() now sends RST: no FIN, no goodbye
        ::setsockopt(p.down, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      ::close(p.down);
    }
    if (p.up >= 0) {
      ::close(p.up);
    }
    if (p.down >= 0 || p.up >= 0) {
      --open_pairs_;
    }
    p.down = p.up = -1;
  }

  int dial_target() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(target_port_);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return fd;
    }
    if (fd >= 0) {
      ::close(fd);
    }
    return -1;
  }

  void loop(const std::stop_token& st) {
    std::vector<char> buf(64 * 1024);
    while (!st.stop_requested()) {
      if (cut_done_ < cut_requested_) {
        const int target = cut_requested_;
        for (auto& p : pairs_) {
          close_pair(p, true);
        }
        pairs_.clear();
        cut_done_ = target;
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (const auto& p : pairs_) {
        fds.push_back({p.down, POLLIN, 0});
        fds.push_back({p.up, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 50) <= 0) {
        continue;
      }
      if ((fds[0].revents & POLLIN) != 0) {
        const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          ++accepted_;
          const int u = dial_target();
          if (u < 0) {
            ::close(c);
          } else {
            pairs_.push_back({c, u});
            ++open_pairs_;
          }
        }
      }
      for (std::size_t i = 0; i + 1 < fds.size() && i / 2 < pairs_.size(); i += 2) {
        Pair& p = pairs_[i / 2];
        for (int side = 0; side < 2; ++side) {
          const pollfd& f = fds[1 + i + side];
          if (p.down < 0 || (f.revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
            continue;
          }
          const int from = side == 0 ? p.down : p.up;
          const int to = side == 0 ? p.up : p.down;
          const auto n = ::recv(from, buf.data(), buf.size(), 0);
          if (n <= 0 || !send_all(to, buf.data(), static_cast<std::size_t>(n))) {
            close_pair(p, false);
          }
        }
      }
      std::erase_if(pairs_, [](const Pair& p) { return p.down < 0; });
    }
  }

  std::uint16_t target_port_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::vector<Pair> pairs_;  // relay thread only
  std::atomic<int> accepted_{0};
  std::atomic<int> open_pairs_{0};
  std::atomic<int> cut_requested_{0};
  std::atomic<int> cut_done_{0};
  std::jthread thread_;
};

// ---------------------------------------------------------------------------------------
// The shared pgwarden of this file.

struct Suite {
  std::string role;  // upstream role of every working backend (static credentials)
  std::unique_ptr<TempDir> dir;
  std::optional<CertAuthority> rogue_ca;  // signed nothing the cluster serves
  std::unique_ptr<CuttableRelay> relay;
  // Listener ports.
  std::uint16_t plain = 0;     // tls=disable, trust, backend app
  std::uint16_t limited = 0;   // TLS, scram, auth_failure_limit 3 in 2 s
  std::uint16_t limited2 = 0;  // the same settings, its own limiter
  std::uint16_t verifyca = 0;  // backend verify-ca with tls_server_name = "wrong.example"
  std::uint16_t wrongca = 0;   // backend verify-ca against a CA that did not sign the server
  std::uint16_t relayed = 0;   // backend through the cuttable relay
  std::uint16_t idle = 0;      // idle_timeout = 1s
  std::unique_ptr<PgwardenProcess> proxy;  // declared last: stopped before the relay goes
};

class ProxySession : public SharedSuite<Suite, ProxySession> {
  friend class SharedSuite<Suite, ProxySession>;  // calls build_suite

 protected:
  static void build_suite(Suite& s) {
    PgCluster& pg = shared_cluster();
    s.role = unique_name("sessit_app");
    pg.create_role(RoleSpec{s.role, AuthMethod::kScram, std::string(kUpstreamPassword), false, ""});
    s.dir = std::make_unique<TempDir>("sessit");
    s.rogue_ca = CertAuthority::create(s.dir->path(), "rogue-ca", "pgwarden sessit rogue CA");
    s.relay = std::make_unique<CuttableRelay>(pg.port());

    PgwardenOptions options;
    options.ports = distinct_ports(7);
    s.plain = options.ports[0];
    s.limited = options.ports[1];
    s.limited2 = options.ports[2];
    s.verifyca = options.ports[3];
    s.wrongca = options.ports[4];
    s.relayed = options.ports[5];
    s.idle = options.ports[6];
    options.config = config_text(s, pg);
    options.files.push_back(PgwardenFile{"users.txt", users_line("alice", kAlicePassword)});
    options.env = {{"SESSIT_UPSTREAM_PW", std::string(kUpstreamPassword)}};
    s.proxy = PgwardenProcess::start(options);
  }

  static std::string config_text(const Suite& s, const PgCluster& pg) {
    const auto& cert = pg.server_cert();
    auto listener = [&](const std::string& name, std::uint16_t port, const std::string& backend,
                        const std::string& extra) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) + "\n" + extra + "\n";
    };
    const std::string trust = "tls = \"disable\"\nauth = [\"trust\"]\n";
    const std::string scram_limited = "tls = \"require\"\ntls_cert = " + toml_quote(cert.cert) +
                                      "\ntls_key = " + toml_quote(cert.key) +
                                      "\nauth = [\"scram\"]\nusers_file = \"users.txt\"\n"
                                      "auth_failure_limit = 3\nauth_failure_window = \"2s\"\n";
    auto backend = [&](const std::string& name, const std::string& address,
                       const std::string& tls) {
      return "[backend." + name + "]\naddress = " + toml_quote(address) + "\n" + tls +
             "credentials = \"static\"\nuser = " + toml_quote(s.role) +
             "\npassword = \"${SESSIT_UPSTREAM_PW}\"\n\n";
    };
    const std::string pg_address = "localhost:" + std::to_string(pg.port());
    const std::string cluster_ca = "tls_ca = " + toml_quote(pg.ca_cert()) + "\n";

    std::string t = "[server]\nworkers = 2\nshutdown_grace = \"2s\"\nlog_level = \"debug\"\n\n";
    t += "[audit]\npath = \"@DIR@/audit.jsonl\"\n\n";
    t += listener("plain", s.plain, "app", trust);
    t += listener("limited", s.limited, "app", scram_limited);
    t += listener("limited2", s.limited2, "app", scram_limited);
    t += listener("verifyca", s.verifyca, "verifyca", trust);
    t += listener("wrongca", s.wrongca, "wrongca", trust);
    t += listener("relayed", s.relayed, "relayed", trust);
    t += listener("idle", s.idle, "app", trust + "idle_timeout = \"1s\"\n");
    t += backend("app", pg_address, "tls = \"verify-full\"\n" + cluster_ca);
    t += backend("verifyca", pg_address,
                 "tls = \"verify-ca\"\ntls_server_name = \"wrong.example\"\n" + cluster_ca);
    t += backend("wrongca", pg_address,
                 "tls = \"verify-ca\"\ntls_ca = " + toml_quote(s.rogue_ca->cert()) + "\n");
    // The relay listens on 127.0.0.1 only; the name checked is the certificate's DNS SAN.
    t += backend("relayed", "127.0.0.1:" + std::to_string(s.relay->port()),
                 "tls = \"verify-full\"\ntls_server_name = \"localhost\"\n" + cluster_ca);
    return t;
  }

  static PgCluster& pg() { return shared_cluster(); }
  static Suite& s() { return *s_; }

  // libpq through a pgwarden listener on 127.0.0.1.
  static ConnInfo via(std::uint16_t port, const std::string& user = "sessit",
                      const std::string& password = "") {
    ConnInfo ci = pg().conninfo(user, password, HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("application_name", "proxy_session_test");
    return ci;
  }
  static ConnInfo plain(std::uint16_t port) {
    ConnInfo ci = via(port);
    ci.set("sslmode", "disable");
    return ci;
  }
};

// ---------------------------------------------------------------------------------------
// 1. Rate limiting of repeated authentication failures

TEST_F(ProxySession, RepeatedAuthFailuresFromOneAddressAreRateLimitedPerListener) {
  const auto window = 2s;
  const auto first_failure = Clock::now();
  for (int i = 1; i <= 3; ++i) {
    auto out = try_connect(via(s().limited, "alice", std::string(kWrongPassword)), 30s);
    ASSERT_FALSE(out.ok()) << "wrong password " << i << " logged in";
    EXPECT_EQ(out.sqlstate, "28P01") << "attempt " << i << ": " << out.error;
    EXPECT_TRUE(contains(out.error, "password authentication failed for user \"alice\""))
        << out.error;
  }

  // The 4th attempt is refused before any authentication, even with the right password.
  auto blocked = try_connect(via(s().limited, "alice", std::string(kAlicePassword)), 30s);
  if (blocked.ok() && Clock::now() - first_failure >= window) {
    GTEST_SKIP() << "the machine was too slow: the three failures did not fit in the "
                    "2 s window, so no block was expected";
  }
  ASSERT_FALSE(blocked.ok()) << "the 4th attempt logged in";
  EXPECT_EQ(blocked.sqlstate, "28000") << blocked.error;
  EXPECT_TRUE(contains(blocked.error, "too many failed authentication attempts")) << blocked.error;
  EXPECT_FALSE(contains(blocked.error, kAlicePassword));

  // Meanwhile another listener (its own limiter) lets the same address in.
  auto other = try_connect(via(s().limited2, "alice", std::string(kAlicePassword)), 30s);
  ASSERT_TRUE(other.ok()) << other.error;
  EXPECT_EQ(query_value(other.conn.get(), "SELECT current_user"), s().role);

  // Once the window has passed, the right password works again. Refusals of a blocked address
  // are not failures, so polling does not extend the block.
  std::string last_error;
  const bool back = wait_until(
      [&] {
        auto out = try_connect(via(s().limited, "alice", std::string(kAlicePassword)), 30s);
        if (!out.ok()) {
          last_error = out.error;
          EXPECT_EQ(out.sqlstate, "28000") << out.error;
        }
        return out.ok();
      },
      10s, 250ms);
  EXPECT_TRUE(back) << "still refused 10 s later: " << last_error;
  EXPECT_GE(Clock::now() - first_failure, window);
}

// ---------------------------------------------------------------------------------------
// 2. Upstream tls = "verify-ca"

TEST_F(ProxySession, UpstreamVerifyCaChecksTheChainButNotTheName) {
  // tls_server_name = "wrong.example" (the certificate says localhost): verify-full refuses
  // this (proxy_tls_test), verify-ca accepts it because the chain is the cluster CA's.
  auto out = try_connect(plain(s().verifyca), 30s);
  ASSERT_TRUE(out.ok()) << out.error;
  auto rows = query_rows(out.conn.get(),
                         "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], s().role);
  EXPECT_EQ(rows[0][1], "t");  // the upstream leg is TLS

  // verify-ca with a CA that did not sign the server's certificate: refused.
  auto wrong = try_connect(plain(s().wrongca), 30s);
  ASSERT_FALSE(wrong.ok()) << "connected through a backend verified against the wrong CA";
  EXPECT_EQ(wrong.sqlstate, "08006") << wrong.error;
  EXPECT_TRUE(contains(wrong.error, "TLS verification")) << wrong.error;
  EXPECT_TRUE(contains(wrong.error, "certificate verify failed")) << wrong.error;
}

// ---------------------------------------------------------------------------------------
// 3. Upstream client certificate

TEST_F(ProxySession, UpstreamClientCertificateLogsInToACertRole) {
  TempDir dir("sessit-cert");
  CertAuthority client_ca =
      CertAuthority::create(dir.path(), "upstream-client-ca", "pgwarden sessit upstream client CA");
  const std::string role = unique_name("sessit_cert");
  LeafSpec leaf;
  leaf.common_name = role;
  leaf.usage = CertUsage::kClient;
  CertFiles client = client_ca.issue(leaf, "pgwarden-client");

  ClusterOptions options;
  options.client_ca_file = client_ca.cert();
  options.roles = {RoleSpec{role, AuthMethod::kCert}};
  auto priv = PgCluster::start(options);

  // Control: the role really needs the certificate (libpq without one is refused).
  auto direct = try_connect(priv->conninfo(role), 30s);
  ASSERT_FALSE(direct.ok()) << "the cert role logged in without a certificate";

  const auto ports = distinct_ports(2);
  auto backend = [&](const std::string& name, bool with_cert) {
    std::string t = "[backend." + name +
                    "]\naddress = " + toml_quote("localhost:" + std::to_string(priv->port())) +
                    "\ntls = \"verify-full\"\ntls_ca = " + toml_quote(priv->ca_cert()) + "\n";
    if (with_cert) {
      t += "tls_client_cert = " + toml_quote(client.cert) +
           "\ntls_client_key = " + toml_quote(client.key) + "\n";
    }
    return t + "credentials = \"static\"\nuser = " + toml_quote(role) + "\n\n";
  };
  PgwardenOptions o;
  o.ports = ports;
  o.config = "[server]\nworkers = 1\nshutdown_grace = \"2s\"\n\n";
  o.config += "[[listener]]\nname = \"cert\"\nlisten = " +
              toml_quote("127.0.0.1:" + std::to_string(ports[0])) +
              "\nbackend = \"cert\"\ntls = \"disable\"\nauth = [\"trust\"]\n\n";
  o.config += "[[listener]]\nname = \"nocert\"\nlisten = " +
              toml_quote("127.0.0.1:" + std::to_string(ports[1])) +
              "\nbackend = \"nocert\"\ntls = \"disable\"\nauth = [\"trust\"]\n\n";
  o.config += backend("cert", true) + backend("nocert", false);
  auto proxy = PgwardenProcess::start(o);

  auto out = try_connect(plain(ports[0]), 30s);
  ASSERT_TRUE(out.ok()) << out.error << "\n" << proxy->log();
  auto rows = query_rows(out.conn.get(),
                         "SELECT current_user, client_dn FROM pg_stat_ssl "
                         "WHERE pid = pg_backend_pid()");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], role);
  EXPECT_EQ(rows[0][1], "/CN=" + role);

  // Control: the same backend without tls_client_cert is refused by the server, and the
  // client is told which step failed.
  auto refused = try_connect(plain(ports[1]), 30s);
  ASSERT_FALSE(refused.ok()) << "logged in to a cert role without a certificate";
  EXPECT_EQ(refused.sqlstate, "08006") << refused.error;
  EXPECT_TRUE(contains(refused.error, "authentication")) << refused.error;
}

// ---------------------------------------------------------------------------------------
// 4. Upstream failure mid-session

TEST_F(ProxySession, ServerTerminatingTheBackendReachesTheClientAsItsOwnFatal) {
  auto c = raw_login(s().plain);
  auto r = c->simple_query("SELECT pg_backend_pid()");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.rows.size(), 1u);
  const std::string server_pid = r.rows[0][0].value_or("");
  ASSERT_FALSE(server_pid.empty());

  ASSERT_EQ(pg().query_value("SELECT pg_terminate_backend($1::int)", {server_pid}), "t");

  // The server's own FATAL 57P01, then the end of the connection, and nothing else.
  const auto messages = read_until_closed(*c);
  std::vector<ServerError> errors;
  for (const auto& m : messages) {
    if (m.type == 'E') {
      errors.push_back(error_of(m));
    }
  }
  ASSERT_EQ(errors.size(), 1u) << "expected exactly the server's FATAL";
  EXPECT_EQ(errors[0].severity, "FATAL");
  EXPECT_EQ(errors[0].sqlstate, "57P01");
  EXPECT_TRUE(contains(errors[0].message, "administrator command")) << errors[0].message;
  EXPECT_EQ(c->buffered(), 0u);
}

TEST_F(ProxySession, UpstreamConnectionCutWithoutAMessageGives08006) {
  // Idle session: the relay cuts both legs; pgwarden reports it at once.
  {
    const int before = s().relay->accepted();
    auto c = raw_login(s().relayed);
    EXPECT_GT(s().relay->accepted(), before);  // the session really goes through the relay
    auto r = c->simple_query("SELECT 'through-relay'");
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.rows.size(), 1u);
    EXPECT_EQ(r.rows[0][0], "through-relay");

    s().relay->cut_all();
    const auto messages = read_until_closed(*c);
    ASSERT_EQ(messages.size(), 1u);
    ASSERT_EQ(messages[0].type, 'E');
    const auto e = error_of(messages[0]);
    EXPECT_EQ(e.severity, "FATAL");
    EXPECT_EQ(e.sqlstate, "08006");
    EXPECT_EQ(e.message, "connection to the upstream server lost");
  }

  // A session in the middle of a query: the client gets the FATAL instead of waiting.
  {
    const std::string marker = unique_name("sessit_cut");
    auto c = raw_login(s().relayed);
    c->write_query("SELECT pg_sleep(30) AS " + marker);
    ASSERT_TRUE(wait_query_active(pg(), marker)) << "the query never started on the server";
    s().relay->cut_all();
    auto result = c->read_query_result();
    EXPECT_TRUE(result.closed);
    EXPECT_TRUE(result.rows.empty());
    ASSERT_TRUE(result.error.has_value());
    EXPECT_EQ(result.error->severity, "FATAL");
    EXPECT_EQ(result.error->sqlstate, "08006");
    EXPECT_EQ(result.error->message, "connection to the upstream server lost");
    // The orphaned backend would sleep on; end it.
    terminate_marked(pg(), marker);
  }

  // pgwarden itself is fine: a new session through the relay works.
  auto again = raw_login(s().relayed);
  auto r = again->simple_query("SELECT 'after-cut'");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.rows.at(0).at(0), "after-cut");
}

// ---------------------------------------------------------------------------------------
// 5. idle_timeout

TEST_F(ProxySession, IdleTimeoutEndsIdleSessionsButNotARunningQuery) {
  auto idle = raw_login(s().idle);
  auto busy = raw_login(s().idle);
  ASSERT_TRUE(idle->simple_query("SELECT 1").ok());
  busy->write_query("SELECT pg_sleep(3), 'slept'");

  // The idle one: FATAL 57P05 after about a second, then the connection ends.
  const auto idle_messages = read_until_closed(*idle);
  ASSERT_EQ(idle_messages.size(), 1u);
  ASSERT_EQ(idle_messages[0].type, 'E');
  const auto e = error_of(idle_messages[0]);
  EXPECT_EQ(e.severity, "FATAL");
  EXPECT_EQ(e.sqlstate, "57P05");
  EXPECT_TRUE(contains(e.message, "idle-session timeout")) << e.message;

  // The busy one runs three times idle_timeout and still gets its result.
  auto result = busy->read_query_result();
  ASSERT_FALSE(result.closed) << "the session was ended during its query";
  ASSERT_FALSE(result.error.has_value()) << result.error->sqlstate << " " << result.error->message;
  ASSERT_EQ(result.rows.size(), 1u);
  EXPECT_EQ(result.rows[0][1], "slept");
  EXPECT_EQ(result.transaction_status, 'I');

  // Idle now, it is ended in turn.
  auto later = busy->read_error();
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->sqlstate, "57P05");
  EXPECT_TRUE(busy->wait_closed(10s));
}

// ---------------------------------------------------------------------------------------
// 6. The pgwarden.preset startup setting

TEST_F(ProxySession, PresetStartupOptionIsConsumedValidatedAndNotForwarded) {
  // Accepted, and taken out of what goes upstream: the server has no such setting.
  ConnInfo ro = plain(s().plain);
  ro.set("options", "-c pgwarden.preset=readonly");
  auto out = try_connect(ro, 30s);
  ASSERT_TRUE(out.ok()) << out.error;
  auto rows = query_rows(out.conn.get(), "SELECT current_setting('pgwarden.preset', true)");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0][0].has_value()) << "the server saw pgwarden.preset = " << *rows[0][0];
  auto shown = run_query(out.conn.get(), "SHOW pgwarden.preset");
  EXPECT_FALSE(shown.ok());
  EXPECT_EQ(shown.sqlstate, "42704") << shown.error;

  // Other -c options in the same string still reach the server.
  ConnInfo mixed = plain(s().plain);
  mixed.set("options", "-c search_path=sessit_foo -c pgwarden.preset=readonly -c work_mem=2345kB");
  auto m = try_connect(mixed, 30s);
  ASSERT_TRUE(m.ok()) << m.error;
  EXPECT_EQ(query_value(m.conn.get(), "SHOW search_path"), "sessit_foo");
  EXPECT_EQ(query_value(m.conn.get(), "SHOW work_mem"), "2345kB");
  EXPECT_FALSE(query_rows(m.conn.get(), "SELECT current_setting('pgwarden.preset', true)")
                   .at(0)
                   .at(0)
                   .has_value());

  // An unknown preset: FATAL 22023. Any other pgwarden setting is pgwarden's to set, never the
  // client's: FATAL 42501.
  ConnInfo bad = plain(s().plain);
  bad.set("options", "-c pgwarden.preset=superuser");
  auto b = try_connect(bad, 30s);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.sqlstate, "22023") << b.error;
  EXPECT_TRUE(contains(b.error, "pgwarden.preset")) << b.error;

  ConnInfo unknown = plain(s().plain);
  unknown.set("options", "-c pgwarden.x=1");
  auto u = try_connect(unknown, 30s);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.sqlstate, "42501") << u.error;
  EXPECT_TRUE(contains(u.error, "pgwarden.x")) << u.error;

  // The same as a startup parameter of its own (not inside options).
  {
    auto c = RawClient::dial("127.0.0.1", s().plain);
    auto params = startup("sessit");
    params.emplace_back("pgwarden.preset", "readonly");
    c->write_startup(params);
    LoginResult login = c->login_result();
    ASSERT_TRUE(login.ready()) << (login.error ? login.error->message : "not ready");
    auto r = c->simple_query("SELECT current_setting('pgwarden.preset', true) IS NULL");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.rows.at(0).at(0), "t");
  }
  {
    auto c = RawClient::dial("127.0.0.1", s().plain);
    auto params = startup("sessit");
    params.emplace_back("pgwarden.preset", "root");
    c->write_startup(params);
    LoginResult login = c->login_result();
    EXPECT_FALSE(login.authenticated);
    ASSERT_TRUE(login.error.has_value());
    EXPECT_EQ(login.error->severity, "FATAL");
    EXPECT_EQ(login.error->sqlstate, "22023");
    EXPECT_TRUE(c->wait_closed(10s));
  }
}

// ---------------------------------------------------------------------------------------
// 8. Protocol 3.2 against PostgreSQL 15

TEST_F(ProxySession, Protocol32IsNegotiatedDownTo30WithA4ByteCancelSecret) {
  LoginResult login;
  auto c = raw_login(s().plain, &login, 2);
  ASSERT_TRUE(login.negotiated_version.has_value()) << "no NegotiateProtocolVersion";
  EXPECT_EQ(*login.negotiated_version, (3u << 16) | 0u);  // 3.0, what PostgreSQL 15 speaks
  EXPECT_TRUE(login.unrecognized_options.empty());
  EXPECT_TRUE(login.authenticated);
  ASSERT_TRUE(login.backend_key.has_value());
  EXPECT_EQ(login.backend_key->secret.size(), 4u);
  auto r = c->simple_query("SELECT current_user");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.rows.at(0).at(0), s().role);

  // Control: a 3.0 client gets no NegotiateProtocolVersion.
  LoginResult plain30;
  auto c30 = raw_login(s().plain, &plain30, 0);
  EXPECT_FALSE(plain30.negotiated_version.has_value());
  ASSERT_TRUE(plain30.backend_key.has_value());
  EXPECT_EQ(plain30.backend_key->secret.size(), 4u);
}

// ---------------------------------------------------------------------------------------
// 7. Cancel across pgwarden instances (own processes: needs [cluster])

TEST(ProxySessionCluster, CancelSentToAPeerInstanceIsForwardedToTheOwner) {
  PgCluster& pg = shared_cluster();
  const std::string role = unique_name("sessit_peer");
  pg.create_role(RoleSpec{role, AuthMethod::kScram, std::string(kUpstreamPassword), false, ""});
  const auto ports = distinct_ports(2);
  const std::uint16_t a_port = ports[0];
  const std::uint16_t b_port = ports[1];
  auto config = [&](int id, std::uint16_t own, int peer_id, std::uint16_t peer) {
    return "[server]\nworkers = 2\nshutdown_grace = \"2s\"\nlog_level = \"debug\"\n\n"
           "[cluster]\ninstance_id = " +
           std::to_string(id) + "\npeers = [{instance_id = " + std::to_string(peer_id) +
           ", address = " + toml_quote("127.0.0.1:" + std::to_string(peer)) +
           "}]\n\n[[listener]]\nname = \"main\"\nlisten = " +
           toml_quote("127.0.0.1:" + std::to_string(own)) +
           "\ntls = \"disable\"\nauth = [\"trust\"]\n\n[backend.app]\naddress = " +
           toml_quote("localhost:" + std::to_string(pg.port())) +
           "\ntls = \"verify-full\"\ntls_ca = " + toml_quote(pg.ca_cert()) +
           "\ncredentials = \"static\"\nuser = " + toml_quote(role) +
           "\npassword = \"${SESSIT_UPSTREAM_PW}\"\n";
  };
  auto start = [&](int id, std::uint16_t own, int peer_id, std::uint16_t peer) {
    PgwardenOptions o;
    o.config = config(id, own, peer_id, peer);
    o.env = {{"SESSIT_UPSTREAM_PW", std::string(kUpstreamPassword)}};
    o.ports = {own};
    return PgwardenProcess::start(o);
  };
  auto a = start(1, a_port, 2, b_port);
  auto b = start(2, b_port, 1, a_port);

  // Each instance's keys carry its id in the first byte of the secret; the process id is
  // the server's own.
  LoginResult on_b;
  auto b_session = raw_login(b_port, &on_b);
  ASSERT_TRUE(on_b.backend_key.has_value());
  EXPECT_EQ(std::to_integer<unsigned>(on_b.backend_key->secret.at(0)), 2u);

  LoginResult on_a;
  auto c = raw_login(a_port, &on_a);
  ASSERT_TRUE(on_a.backend_key.has_value());
  const BackendKey key = *on_a.backend_key;
  EXPECT_EQ(std::to_integer<unsigned>(key.secret.at(0)), 1u);
  EXPECT_EQ(key.secret.size(), 4u);

  const std::string marker = unique_name("sessit_peer_sleep");
  c->set_read_timeout(20s);
  c->write_query("SELECT pg_sleep(30) AS " + marker);
  ASSERT_TRUE(wait_query_active(pg, marker)) << "the query never started on the server";

  // A wrong secret sent to B is forwarded to A, which drops it: the query runs on.
  {
    std::vector<std::byte> wrong = key.secret;
    wrong[1] ^= std::byte{0x5a};  // not the owner byte: B still hands it to A
    auto forged = RawClient::dial("127.0.0.1", b_port);
    forged->write_cancel(key.process_id, wrong);
    EXPECT_TRUE(forged->wait_closed(10s));
    std::this_thread::sleep_for(1s);  // a wrongly honoured cancel acts well within this
    EXPECT_TRUE(wait_query_active(pg, marker, 0ms)) << "a forged cancel stopped the query";
  }

  // A's key sent to B: B forwards it to A, A to PostgreSQL.
  auto cancel = RawClient::dial("127.0.0.1", b_port);
  cancel->write_cancel(key.process_id, key.secret);
  EXPECT_TRUE(cancel->wait_closed(10s));
  EXPECT_EQ(cancel->buffered(), 0u);

  auto result = c->read_query_result();
  ASSERT_FALSE(result.closed) << "the session ended instead of its query";
  ASSERT_TRUE(result.error.has_value()) << "the query was not cancelled";
  EXPECT_EQ(result.error->sqlstate, "57014") << result.error->message;
  EXPECT_EQ(result.transaction_status, 'I');
  // The session survives its cancelled query.
  auto after = c->simple_query("SELECT 'after-peer-cancel'");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after.rows.at(0).at(0), "after-peer-cancel");

  terminate_marked(pg, marker);  // nothing should be left; just in case
  EXPECT_TRUE(a->running()) << a->log();
  EXPECT_TRUE(b->running()) << b->log();
}

}  // namespace
}  // namespace pgwarden::fixture
