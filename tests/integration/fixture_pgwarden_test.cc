// Self-tests of the fixture that proxy tests use: RawClient against the real PostgreSQL 15
// of the shared cluster (TLS negotiation and verification, authentication errors, GSSAPI
// refusal, cancel keys, simple queries), RawClient's own time bounds, and PgwardenProcess
// with the real pgwarden binary (a rejected configuration) and with a small Perl stand-in
// server (readiness, signals, reload, exit, teardown).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "fixture/certs.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/temp_dir.h"
#include "fixture/test_util.h"
#include "wire/bytes.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// --- RawClient against PostgreSQL --------------------------------------------------

class RawClientPg : public ::testing::Test {
 protected:
  PgCluster& pg() { return shared_cluster(); }

  TlsClientOptions verify_full(const std::string& host = "localhost") {
    TlsClientOptions o;
    o.ca_file = pg().ca_cert();
    o.expected_host = host;
    if (host == "localhost") {
      o.sni = host;
    }
    return o;
  }

  // SSLRequest, 'S', handshake with `options`.
  std::unique_ptr<RawClient> tls_client(const TlsClientOptions& options, TlsOutcome* outcome) {
    auto c = RawClient::dial("127.0.0.1", pg().port());
    c->write_ssl_request();
    auto answer = c->read_byte();
    EXPECT_EQ(answer, 'S');
    *outcome = c->start_tls(options);
    return c;
  }

  // A role that logs in with a cleartext password over TLS (AuthMethod::kPassword).
  RoleSpec password_role() {
    RoleSpec spec{unique_name("raw"), AuthMethod::kPassword, "raw client 'pw'", false, ""};
    pg().create_role(spec);
    return spec;
  }

  std::unique_ptr<RawClient> logged_in(const RoleSpec& role, LoginResult* login) {
    TlsOutcome tls;
    auto c = tls_client(verify_full(), &tls);
    EXPECT_TRUE(tls.ok) << tls.error;
    c->write_startup({{"user", role.name}, {"database", "postgres"}});
    *login = c->login_result(role.password);
    return c;
  }
};

TEST_F(RawClientPg, SslRequestIsAnsweredWithS) {
  auto c = RawClient::dial("127.0.0.1", pg().port());
  c->write_ssl_request();
  EXPECT_EQ(c->read_byte(), 'S');
  EXPECT_EQ(c->buffered(), 0u);
}

TEST_F(RawClientPg, TlsHandshakeVerifiesTheClusterCertificate) {
  TlsOutcome tls;
  auto c = tls_client(verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  EXPECT_TRUE(c->tls_active());
  EXPECT_TRUE(c->tls_version().starts_with("TLSv1.")) << c->tls_version();
  EXPECT_EQ(c->peer_subject(), "CN=localhost");
  auto san = c->peer_san();
  EXPECT_TRUE(contains(san, "DNS:localhost"));
  EXPECT_TRUE(contains(san, "IP:127.0.0.1"));
  EXPECT_TRUE(contains(san, "IP:::1"));
  // PostgreSQL 15 knows no ALPN, and we offered none.
  EXPECT_EQ(c->alpn_selected(), "");

  // An IP literal is checked against the IP SANs.
  TlsOutcome by_ip;
  auto c2 = tls_client(verify_full("127.0.0.1"), &by_ip);
  EXPECT_TRUE(by_ip.ok) << by_ip.error;
}

TEST_F(RawClientPg, TlsHandshakeFailsForAWrongHostOrCa) {
  TlsOutcome wrong_host;
  auto c = tls_client(verify_full("db.example.com"), &wrong_host);
  EXPECT_FALSE(wrong_host.ok);
  EXPECT_NE(wrong_host.error.find("hostname mismatch"), std::string::npos) << wrong_host.error;
  EXPECT_FALSE(c->tls_active());

  TlsOutcome wrong_ip;
  auto c2 = tls_client(verify_full("10.1.2.3"), &wrong_ip);
  EXPECT_FALSE(wrong_ip.ok);
  EXPECT_NE(wrong_ip.error.find("IP address mismatch"), std::string::npos) << wrong_ip.error;

  TempDir dir("rawclient-ca");
  auto other = CertAuthority::create(dir.path(), "other-ca", "Some Other CA");
  TlsClientOptions other_ca = verify_full();
  other_ca.ca_file = other.cert();
  TlsOutcome untrusted;
  auto c3 = tls_client(other_ca, &untrusted);
  EXPECT_FALSE(untrusted.ok);
  EXPECT_NE(untrusted.error.find("certificate verification"), std::string::npos) << untrusted.error;

  // Without a CA nothing is verified, so the wrong name passes.
  TlsClientOptions none;
  none.expected_host = "db.example.com";
  TlsOutcome unverified;
  auto c4 = tls_client(none, &unverified);
  EXPECT_TRUE(unverified.ok) << unverified.error;
}

TEST_F(RawClientPg, UnknownUserGetsAFatalAuthenticationError) {
  TlsOutcome tls;
  auto c = tls_client(verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup({{"user", unique_name("nobody")}, {"database", "postgres"}});
  auto error = c->read_error();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->severity, "FATAL");
  EXPECT_TRUE(error->sqlstate == "28P01" || error->sqlstate == "28000") << error->sqlstate;
  EXPECT_FALSE(error->message.empty());
  EXPECT_TRUE(c->wait_closed(5s));
  EXPECT_NE(c->close_reason(), CloseReason::kOpen);
  // Reading on at the end of the connection is not an error.
  EXPECT_FALSE(c->read_message().has_value());
}

TEST_F(RawClientPg, WrongPasswordIsReportedByLoginResult) {
  RoleSpec role = password_role();
  role.password += "-wrong";
  LoginResult login;
  auto c = logged_in(role, &login);
  EXPECT_EQ(login.status, LoginStatus::kError);
  ASSERT_TRUE(login.error.has_value());
  EXPECT_EQ(login.error->sqlstate, "28P01");
  EXPECT_FALSE(login.authenticated);
}

TEST_F(RawClientPg, LoginResultWithoutPasswordStopsAtTheRequest) {
  RoleSpec role = password_role();
  TlsOutcome tls;
  auto c = tls_client(verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup({{"user", role.name}, {"database", "postgres"}});
  LoginResult login = c->login_result();
  EXPECT_EQ(login.status, LoginStatus::kAuthRequested);
  EXPECT_EQ(login.auth_request, 3);  // AuthenticationCleartextPassword
}

TEST_F(RawClientPg, LoginAndSimpleQueries) {
  RoleSpec role = password_role();
  LoginResult login;
  auto c = logged_in(role, &login);
  ASSERT_EQ(login.status, LoginStatus::kReady) << (login.error ? login.error->message : "");
  EXPECT_TRUE(login.authenticated);
  EXPECT_EQ(login.transaction_status, 'I');
  EXPECT_TRUE(login.parameter("server_version").value_or("").starts_with("15"));
  EXPECT_EQ(login.parameter("session_authorization"), role.name);
  ASSERT_TRUE(login.backend_key.has_value());
  EXPECT_EQ(login.backend_key->secret.size(), 4u);
  EXPECT_NE(login.backend_key->process_id, 0u);

  auto r = c->simple_query(
      "SELECT pg_backend_pid()::text AS pid, NULL::text AS nothing; SELECT 'x' UNION ALL "
      "SELECT 'y'");
  ASSERT_TRUE(r.ok()) << r.error->message;
  EXPECT_EQ(r.columns, (std::vector<std::string>{"?column?"}));
  ASSERT_EQ(r.rows.size(), 3u);
  EXPECT_EQ(r.rows[0][0], std::to_string(login.backend_key->process_id));
  EXPECT_EQ(r.rows[0][1], std::nullopt);
  EXPECT_EQ(r.rows[2][0], "y");
  EXPECT_EQ(r.command_tags, (std::vector<std::string>{"SELECT 1", "SELECT 2"}));

  // An error ends the statement, not the session.
  auto bad = c->simple_query("SELECT 1/0");
  ASSERT_TRUE(bad.error.has_value());
  EXPECT_EQ(bad.error->sqlstate, "22012");
  EXPECT_EQ(bad.error->severity, "ERROR");
  EXPECT_FALSE(bad.closed);
  EXPECT_EQ(bad.transaction_status, 'I');

  auto tx = c->simple_query("BEGIN");
  EXPECT_EQ(tx.command_tag(), "BEGIN");
  EXPECT_EQ(tx.transaction_status, 'T');

  // COPY FROM STDIN is refused with CopyFail, and the session goes on.
  auto copy = c->simple_query("ROLLBACK; CREATE TEMP TABLE t(a int); COPY t FROM STDIN");
  ASSERT_TRUE(copy.error.has_value());
  EXPECT_EQ(copy.error->sqlstate, "57014");
  EXPECT_EQ(c->simple_query("SELECT 2").rows.at(0).at(0), "2");

  c->write_terminate();
  EXPECT_TRUE(c->wait_closed(5s));
}

TEST_F(RawClientPg, UnsupportedMinorVersionGetsNegotiateProtocolVersion) {
  RoleSpec role = password_role();
  TlsOutcome tls;
  auto c = tls_client(verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup({{"user", role.name}, {"database", "postgres"}, {"_pq_.fixture_test", "1"}}, 3,
                   7);
  LoginResult login = c->login_result(role.password);
  ASSERT_EQ(login.status, LoginStatus::kReady) << (login.error ? login.error->message : "");
  // The whole version number 3.0 (196608), not just the minor: what libpq expects too.
  EXPECT_EQ(login.negotiated_version, (3u << 16) | 0u);
  EXPECT_EQ(login.unrecognized_options, (std::vector<std::string>{"_pq_.fixture_test"}));
}

// This PostgreSQL is built --with-gssapi, so over TCP it answers GSSENCRequest with 'G'
// even without a keytab; over the unix socket it never offers GSS encryption and answers
// 'N', after which the same connection goes on with a StartupMessage.
TEST_F(RawClientPg, GssEncRequestIsRefusedWithNThenStartupProceeds) {
  auto c = RawClient::dial_unix(pg().socket_dir() / (".s.PGSQL." + std::to_string(pg().port())));
  c->write_gssenc_request();
  EXPECT_EQ(c->read_byte(), 'N');
  c->write_startup({{"user", std::string(PgCluster::kSuperuser)}, {"database", "postgres"}});
  LoginResult login = c->login_result();
  EXPECT_EQ(login.status, LoginStatus::kReady) << (login.error ? login.error->message : "");
}

TEST_F(RawClientPg, CancelRequestsWithForgedAndRealKeys) {
  RoleSpec role = password_role();
  LoginResult login;
  auto session = logged_in(role, &login);
  ASSERT_TRUE(login.ready());
  ASSERT_TRUE(login.backend_key.has_value());
  const BackendKey key = *login.backend_key;

  // A forged secret for the real pid: the cancel connection is closed and the query is not
  // cancelled.
  std::vector<std::byte> forged = key.secret;
  forged[0] ^= std::byte{0x5a};
  session->write_query("SELECT pg_sleep(1.5)");
  std::this_thread::sleep_for(300ms);
  auto cancel = RawClient::dial("127.0.0.1", pg().port());
  cancel->write_cancel(key.process_id, forged);
  EXPECT_TRUE(cancel->wait_closed(5s));
  auto slept = session->read_query_result();
  EXPECT_TRUE(slept.ok()) << (slept.error ? slept.error->sqlstate : "closed");

  // The real key cancels: this proves write_cancel sends what PostgreSQL expects, so the
  // refusal above was about the key and not about a malformed packet.
  session->write_query("SELECT pg_sleep(30)");
  std::this_thread::sleep_for(300ms);
  auto real = RawClient::dial("127.0.0.1", pg().port());
  real->write_cancel(key.process_id, key.secret);
  EXPECT_TRUE(real->wait_closed(5s));
  const auto started = Clock::now();
  auto cancelled = session->read_query_result();
  ASSERT_TRUE(cancelled.error.has_value());
  EXPECT_EQ(cancelled.error->sqlstate, "57014");
  EXPECT_LT(Clock::now() - started, 10s);
}

// --- RawClient time bounds, against a listener that never answers ---------------------

class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 4) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw FixtureError("listen failed");
    }
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  std::uint16_t port() const { return port_; }
  // The server end of the next connection (the kernel completed the handshake already).
  int accept() { return ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC); }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

TEST(RawClientLocal, ReadsTimeOutInsteadOfHanging) {
  SilentListener listener;
  auto c = RawClient::dial("127.0.0.1", listener.port());
  c->set_read_timeout(300ms);
  const auto t0 = Clock::now();
  EXPECT_THROW(c->read_message(), FixtureError);
  EXPECT_THROW(c->read_byte(), FixtureError);
  TlsOutcome tls = c->start_tls(TlsClientOptions{});
  EXPECT_FALSE(tls.ok);
  EXPECT_NE(tls.error.find("timed out"), std::string::npos) << tls.error;
  EXPECT_LT(Clock::now() - t0, 5s);
}

TEST(RawClientLocal, WaitClosedSeesTheDifferenceBetweenSilenceAndClose) {
  SilentListener listener;
  auto c = RawClient::dial("127.0.0.1", listener.port());
  int server = listener.accept();
  ASSERT_GE(server, 0);
  EXPECT_FALSE(c->wait_closed(200ms));
  EXPECT_EQ(c->close_reason(), CloseReason::kOpen);
  // Data before the close is read and dropped.
  ASSERT_EQ(::send(server, "Zjunk", 5, MSG_NOSIGNAL), 5);
  ::close(server);
  EXPECT_TRUE(c->wait_closed(5s));
  EXPECT_EQ(c->close_reason(), CloseReason::kEof);
  // Writing to the closed peer throws (eventually: the first write may still be accepted)
  // and never raises SIGPIPE.
  EXPECT_THROW(
      {
        for (int i = 0; i < 100; ++i) {
          c->write_raw("some bytes nobody reads");
          std::this_thread::sleep_for(5ms);
        }
      },
      FixtureError);
}

TEST(RawClientLocal, TruncatedMessageIsAnErrorNotAnEof) {
  SilentListener listener;
  auto c = RawClient::dial("127.0.0.1", listener.port());
  int server = listener.accept();
  ASSERT_GE(server, 0);
  // 'Z' declaring 5 bytes, then only the length word: the body byte never comes.
  const std::array<char, 5> partial{'Z', 0, 0, 0, 5};
  ASSERT_EQ(::send(server, partial.data(), partial.size(), MSG_NOSIGNAL), 5);
  ::close(server);
  EXPECT_THROW(c->read_message(), FixtureError);
}

TEST(RawClientLocal, DialRejectsNamesAndReportsRefusal) {
  EXPECT_THROW(RawClient::dial("db.example.com", 5432), FixtureError);
  std::uint16_t port = pick_free_port();  // nobody listens there (racy, but only a refusal)
  EXPECT_THROW(RawClient::dial("127.0.0.1", port), FixtureError);
}

// --- pick_free_port ----------------------------------------------------------------

TEST(PgwardenProcess, PickFreePortReturnsBindablePorts) {
  std::set<std::uint16_t> seen;
  for (int i = 0; i < 5; ++i) {
    const std::uint16_t port = pick_free_port();
    EXPECT_NE(port, 0);
    seen.insert(port);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0)
        << "port " << port << ": " << std::strerror(errno);
    ::close(s);
  }
  // The kernel hands out ephemeral ports in varying order; five identical answers would
  // mean the function does not really ask it.
  EXPECT_GT(seen.size(), 1u);
}

// --- PgwardenProcess with the real binary -------------------------------------------

// Line 3 has an unknown key; line 9 names a users file under @DIR@ that does not exist.
constexpr const char* kRejectedConfig = R"([server]
log_level = "info"
no_such_key = 1

[[listener]]
name = "main"
listen = "127.0.0.1:1"
auth = ["scram"]
users_file = "@DIR@/missing-users.txt"
)";

TEST(PgwardenProcess, RejectedConfigMakesStartThrowWithTheLog) {
  PgwardenOptions options;
  options.binary = PGWARDEN_BINARY;
  options.config = kRejectedConfig;
  options.ports = {pick_free_port()};
  try {
    PgwardenProcess::start(options);
    ADD_FAILURE() << "start() returned for a configuration pgwarden rejects";
  } catch (const FixtureError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("exit 1"), std::string::npos) << what;
    EXPECT_NE(what.find("pgwarden.toml:3: unknown key"), std::string::npos) << what;
  }
}

TEST(PgwardenProcess, ExitCodeLogAndDirExpansionWithoutReadiness) {
  PgwardenOptions options;
  options.config = kRejectedConfig;  // binary: the default, PGWARDEN_BINARY
  options.wait_ready = false;
  auto p = PgwardenProcess::start(options);
  EXPECT_EQ(p->wait_exit(10s), 1);
  EXPECT_FALSE(p->running());
  EXPECT_TRUE(p->wait_for_log("pgwarden.toml:3:", 1s));
  EXPECT_FALSE(p->wait_for_log("no such text in the log", 100ms));
  const std::string log = p->log();
  EXPECT_EQ(log.size(), p->log_size());
  // @DIR@ became the real directory, in the config file and hence in the message.
  EXPECT_NE(log.find((p->dir() / "missing-users.txt").string()), std::string::npos) << log;
  EXPECT_EQ(slurp(p->config_path()).find("@DIR@"), std::string::npos);
  // Signalling a process that has exited is harmless.
  p->signal(SIGTERM);
  EXPECT_EQ(p->wait_exit(10ms), 1);
}

// --- PgwardenProcess with a stand-in server ------------------------------------------

// Listens on $STANDIN_PORT, logs the first line of its config on SIGHUP, exits 0 on SIGTERM
// and 3 on SIGINT: enough of pgwarden's process contract to test the fixture alone.
constexpr const char* kStandIn = R"(#!/usr/bin/perl
use strict;
use warnings;
use IO::Socket::INET;
$| = 1;
my $config = $ARGV[1];
my $port = $ENV{STANDIN_PORT};
$SIG{HUP} = sub {
  open(my $f, '<', $config) or die "cannot read $config: $!";
  my $first = <$f>;
  print STDERR "reloaded: $first";
};
$SIG{TERM} = sub { print STDERR "draining\n"; exit 0; };
$SIG{INT} = sub { exit 3; };
my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                   Listen => 16, ReuseAddr => 1)
  or die "cannot listen on $port: $!";
print STDERR "stand-in listening on $port with $config (secret=$ENV{STANDIN_SECRET})\n";
while (1) {
  my $c = $server->accept;
  close($c) if $c;
}
)";

class PgwardenStandIn : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/perl", X_OK) != 0) {
      GTEST_SKIP() << "/usr/bin/perl is needed for the stand-in server";
    }
    script_ = bin_dir_ / "standin.pl";
    std::ofstream(script_) << kStandIn;
    fs::permissions(script_, fs::perms::owner_all);
  }

  PgwardenOptions options(std::uint16_t port) {
    PgwardenOptions o;
    o.binary = script_;
    o.config = "first config\n";
    o.env = {{"STANDIN_PORT", std::to_string(port)}, {"STANDIN_SECRET", "@DIR@"}};
    o.ports = {port};
    return o;
  }

  TempDir bin_dir_{"standin"};
  fs::path script_;
};

TEST_F(PgwardenStandIn, ReadySignalsReloadAndExit) {
  const std::uint16_t port = pick_free_port();
  auto p = PgwardenProcess::start(options(port));
  // start() returned: the port accepts now.
  auto client = RawClient::dial("127.0.0.1", port);
  EXPECT_TRUE(p->wait_for_log("stand-in listening on " + std::to_string(port), 5s)) << p->log();
  EXPECT_NE(p->log().find(p->config_path().string()), std::string::npos);
  // Env values get @DIR@ expanded too.
  EXPECT_NE(p->log().find("secret=" + p->dir().string()), std::string::npos) << p->log();

  p->rewrite_config("second config\n");
  const std::size_t mark = p->log_size();
  p->signal(SIGHUP);
  EXPECT_TRUE(p->wait_for_log("reloaded: second config", 5s, mark)) << p->log();
  // Text before the mark does not count.
  EXPECT_FALSE(p->wait_for_log("stand-in listening", 50ms, mark));

  EXPECT_EQ(p->wait_exit(100ms), std::nullopt);
  p->signal(SIGTERM);
  EXPECT_EQ(p->wait_exit(5s), 0);
  EXPECT_TRUE(p->wait_for_log("draining", 1s));
}

TEST_F(PgwardenStandIn, ExitBySignalIsReportedNegated) {
  auto p = PgwardenProcess::start(options(pick_free_port()));
  p->signal(SIGKILL);
  EXPECT_EQ(p->wait_exit(5s), -SIGKILL);
}

TEST_F(PgwardenStandIn, ListeningOnTheWrongPortTimesOut) {
  const std::uint16_t listened = pick_free_port();
  PgwardenOptions o = options(listened);
  o.ports = {pick_free_port()};
  if (o.ports[0] == listened) {
    GTEST_SKIP() << "the kernel gave the same port twice";
  }
  o.ready_timeout = 700ms;
  const auto t0 = Clock::now();
  try {
    PgwardenProcess::start(o);
    ADD_FAILURE() << "start() returned although the awaited port never accepted";
  } catch (const FixtureError& e) {
    EXPECT_NE(std::string(e.what()).find("did not accept"), std::string::npos) << e.what();
  }
  EXPECT_LT(Clock::now() - t0, 10s);
}

TEST_F(PgwardenStandIn, DestructorStopsAndReaps) {
  pid_t pid = 0;
  fs::path dir;
  {
    auto p = PgwardenProcess::start(options(pick_free_port()));
    pid = p->pid();
    dir = p->dir();
    ASSERT_TRUE(p->running());
  }
  ASSERT_GT(pid, 0);
  errno = 0;
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);  // reaped, not a zombie
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(PgwardenStandIn, FilesAreWrittenWithTheirModeBesideTheConfig) {
  PgwardenOptions o = options(pick_free_port());
  o.wait_ready = false;
  o.files = {{"users.txt", "\"alice\" \"@DIR@\"\n", fs::perms::owner_read},
             {"certs/server.crt", "PEM",
              fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                  fs::perms::others_read}};
  auto p = PgwardenProcess::start(o);
  EXPECT_EQ(slurp(p->dir() / "users.txt"), "\"alice\" \"" + p->dir().string() + "\"\n");
  EXPECT_EQ(fs::status(p->dir() / "users.txt").permissions(), fs::perms::owner_read);
  EXPECT_EQ(fs::status(p->dir() / "certs/server.crt").permissions(),
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                fs::perms::others_read);
  EXPECT_EQ(slurp(p->config_path()), "first config\n");

  p->write_file("certs/server.crt", "NEW PEM");
  EXPECT_EQ(slurp(p->dir() / "certs/server.crt"), "NEW PEM");
  EXPECT_THROW(p->write_file("../escape.txt", "x"), FixtureError);
  EXPECT_THROW(p->write_file("/etc/escape.txt", "x"), FixtureError);
  EXPECT_FALSE(fs::exists(p->dir().parent_path() / "escape.txt"));
  // No temporary files are left behind.
  for (const auto& entry : fs::recursive_directory_iterator(p->dir())) {
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace pgwarden::fixture
