// Self-tests of the integration fixture against a real PostgreSQL 15 with real clients
// (libpq, psql): TLS verification, each auth method, pg_hba enforcement, private clusters
// beside the shared one, teardown, crash cleanup, and the process/conninfo helpers.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "fixture/certs.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/process.h"
#include "fixture/temp_dir.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string current_user(PGconn* conn) {
  return query_value(conn, "SELECT current_user");
}

bool tcp_accepts(std::uint16_t port) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

RoleSpec role(AuthMethod auth, std::string prefix, std::string password = "") {
  RoleSpec spec;
  spec.name = unique_name(prefix);
  spec.auth = auth;
  spec.password = std::move(password);
  return spec;
}

// --- TLS + SCRAM ------------------------------------------------------------------

TEST(FixtureCluster, ScramUserConnectsWithVerifyFullOverEveryHostForm) {
  PgCluster& pg = shared_cluster();
  RoleSpec alice = role(AuthMethod::kScram, "scram", "s3cret 'quoted' \\ pass");
  pg.create_role(alice);

  std::vector<HostForm> forms = {HostForm::kLocalhost, HostForm::kIpv4};
  if (pg.listens_ipv6()) {
    forms.push_back(HostForm::kIpv6);
  }
  for (HostForm form : forms) {
    ConnectOutcome out = try_connect(pg.conninfo(alice.name, alice.password, form));
    ASSERT_TRUE(out.ok()) << out.error;
    EXPECT_EQ(current_user(out.conn.get()), alice.name);
    EXPECT_EQ(PQsslInUse(out.conn.get()), 1);
    EXPECT_EQ(query_value(out.conn.get(),
                          "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
              "true");
  }
  // The verifier really is SCRAM.
  EXPECT_EQ(pg.query_value("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = $1",
                           {alice.name}),
            "SCRAM-SHA-256$");
}

TEST(FixtureCluster, ChannelBindingRequireWorksForScramAndIsRefusedForMd5) {
  PgCluster& pg = shared_cluster();
  RoleSpec scram = role(AuthMethod::kScram, "cb", "pw-cb");
  RoleSpec md5 = role(AuthMethod::kMd5, "cbmd5", "pw-md5");
  pg.create_roles({scram, md5});

  ConnInfo ci = pg.conninfo(scram.name, scram.password);
  ci.set("channel_binding", "require");
  ConnectOutcome ok = try_connect(ci);
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(current_user(ok.conn.get()), scram.name);

  // Proves channel_binding=require is enforced: MD5 cannot bind to the channel.
  ConnInfo bad = pg.conninfo(md5.name, md5.password);
  bad.set("channel_binding", "require");
  ConnectOutcome refused = try_connect(bad);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error.find("channel binding"), std::string::npos) << refused.error;
}

TEST(FixtureCluster, VerifyFullRejectsAServerFromAnotherCa) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kScram, "otherca", "pw");
  pg.create_role(user);
  CertAuthority other =
      CertAuthority::create(pg.certs_dir(), unique_name("other_ca"), "someone else CA");
  ConnInfo ci = pg.conninfo(user.name, user.password);
  ci.set("sslrootcert", other.cert().string());
  ConnectOutcome out = try_connect(ci);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error.find("certificate verify failed"), std::string::npos) << out.error;
  EXPECT_EQ(out.sqlstate, "");  // refused by the client, before any server error
}

// --- other auth methods ---------------------------------------------------------------

TEST(FixtureCluster, Md5UserConnectsAndIsStoredAsMd5) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kMd5, "md5", "md5-password");
  pg.create_role(user);
  ConnectOutcome out = try_connect(pg.conninfo(user.name, user.password));
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(current_user(out.conn.get()), user.name);
  EXPECT_EQ(
      pg.query_value("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = $1", {user.name}),
      "md5");
  // The server's password_encryption default was restored for later roles.
  EXPECT_EQ(pg.query_value("SHOW password_encryption"), "scram-sha-256");
}

TEST(FixtureCluster, TrustUserConnectsWithoutPassword) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kTrust, "trust");
  pg.create_role(user);
  ConnectOutcome out = try_connect(pg.conninfo(user.name));
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(current_user(out.conn.get()), user.name);
  EXPECT_EQ(PQconnectionUsedPassword(out.conn.get()), 0);
}

TEST(FixtureCluster, CleartextPasswordMethodConnects) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kPassword, "clear", "clear-pw");
  pg.create_role(user);
  ConnectOutcome out = try_connect(pg.conninfo(user.name, user.password));
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(PQconnectionUsedPassword(out.conn.get()), 1);
}

TEST(FixtureCluster, WrongPasswordFailsWith28P01) {
  PgCluster& pg = shared_cluster();
  RoleSpec scram = role(AuthMethod::kScram, "wrongpw", "right");
  RoleSpec md5 = role(AuthMethod::kMd5, "wrongmd5", "right");
  pg.create_roles({scram, md5});
  for (const RoleSpec* r : {&scram, &md5}) {
    ConnectOutcome out = try_connect(pg.conninfo(r->name, "wrong"));
    ASSERT_FALSE(out.ok()) << r->name;
    EXPECT_EQ(out.sqlstate, "28P01") << out.error;
    EXPECT_NE(out.error.find("password authentication failed"), std::string::npos) << out.error;
  }
  // A role that does not exist fails the same way (no user enumeration).
  ConnectOutcome ghost = try_connect(pg.conninfo(unique_name("ghost"), "x"));
  ASSERT_FALSE(ghost.ok());
  EXPECT_EQ(ghost.sqlstate, "28000") << ghost.error;  // no pg_hba line matches it
}

TEST(FixtureCluster, PlaintextRefusedWhenOnlyHostsslAndAllowedOnRequest) {
  PgCluster& pg = shared_cluster();
  RoleSpec tls_only = role(AuthMethod::kScram, "tlsonly", "pw1");
  RoleSpec plain_ok = role(AuthMethod::kScram, "plainok", "pw2");
  plain_ok.allow_plaintext = true;
  pg.create_roles({tls_only, plain_ok});

  ConnInfo refused_ci = pg.conninfo(tls_only.name, tls_only.password, HostForm::kIpv4);
  refused_ci.set("sslmode", "disable");
  ConnectOutcome refused = try_connect(refused_ci);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.sqlstate, "28000") << refused.error;
  EXPECT_NE(refused.error.find("no encryption"), std::string::npos) << refused.error;

  ConnInfo plain_ci = pg.conninfo(plain_ok.name, plain_ok.password, HostForm::kIpv4);
  plain_ci.set("sslmode", "disable");
  ConnectOutcome plain = try_connect(plain_ci);
  ASSERT_TRUE(plain.ok()) << plain.error;
  EXPECT_EQ(PQsslInUse(plain.conn.get()), 0);
  // ...and the same role can still use TLS.
  ConnectOutcome tls = try_connect(pg.conninfo(plain_ok.name, plain_ok.password));
  ASSERT_TRUE(tls.ok()) << tls.error;
  EXPECT_EQ(PQsslInUse(tls.conn.get()), 1);
}

TEST(FixtureCluster, AddedHbaLineTakesEffectImmediately) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kScram, "hbaorder", "pw");
  // A reject line placed before the role's own lines wins (first match).
  pg.add_hba_line("hostssl all \"" + user.name + "\" 127.0.0.1/32 reject");
  pg.create_role(user);
  ConnectOutcome out = try_connect(pg.conninfo(user.name, user.password, HostForm::kIpv4));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.sqlstate, "28000") << out.error;
  EXPECT_NE(out.error.find("rejects connection"), std::string::npos) << out.error;
}

TEST(FixtureCluster, InvalidRoleSpecsAreRefusedBeforeTouchingTheServer) {
  PgCluster& pg = shared_cluster();
  EXPECT_THROW(pg.create_role(RoleSpec{"", AuthMethod::kTrust}), FixtureError);
  EXPECT_THROW(pg.create_role(RoleSpec{"bad\"name", AuthMethod::kTrust}), FixtureError);
  EXPECT_THROW(pg.create_role(RoleSpec{"line\nbreak", AuthMethod::kTrust}), FixtureError);
  EXPECT_THROW(pg.create_role(RoleSpec{std::string(64, 'a'), AuthMethod::kTrust}), FixtureError);
  EXPECT_THROW(pg.create_role(RoleSpec{"nopw", AuthMethod::kScram}), FixtureError);
  // No client CA on the shared cluster, so cert auth cannot work there.
  EXPECT_THROW(pg.create_role(RoleSpec{"certuser", AuthMethod::kCert}), FixtureError);
  EXPECT_THROW(pg.add_hba_line("host all all 0.0.0.0/0 trust\nlocal all all trust"), FixtureError);
  // A line PostgreSQL rejects is reported with its error, then rolled back so later
  // reloads (and roles) still work.
  try {
    pg.add_hba_line("hostssl all all 127.0.0.1/32 no-such-method");
    FAIL() << "expected FixtureError";
  } catch (const FixtureError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-method"), std::string::npos) << e.what();
  }
  RoleSpec user = role(AuthMethod::kTrust, "stillworks");
  pg.create_role(user);
  ConnectOutcome out = try_connect(pg.conninfo(user.name));
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(pg.query_value("SELECT count(*)::text FROM pg_roles WHERE rolname = $1", {user.name}),
            "1");
}

TEST(FixtureCluster, QueryErrorsCarrySqlstate) {
  PgCluster& pg = shared_cluster();
  try {
    pg.exec("SELECT * FROM no_such_table_anywhere");
    FAIL() << "expected FixtureError";
  } catch (const FixtureError& e) {
    EXPECT_NE(std::string(e.what()).find("42P01"), std::string::npos) << e.what();
  }
  auto conn = pg.connect_superuser();
  QueryResult r = run_query(conn.get(), "SELECT 1/0");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.sqlstate, "22012");
  QueryResult nulls = run_query(conn.get(), "SELECT NULL::text, $1::text", {"x"});
  ASSERT_TRUE(nulls.ok()) << nulls.error;
  ASSERT_EQ(nulls.rows.size(), 1u);
  EXPECT_FALSE(nulls.rows[0][0].has_value());
  EXPECT_EQ(nulls.rows[0][1], "x");
}

// --- real client: psql ----------------------------------------------------------------

TEST(FixtureCluster, PsqlConnectsWithVerifyFullThroughEnvironment) {
  PgCluster& pg = shared_cluster();
  RoleSpec user = role(AuthMethod::kScram, "psql", "psql pw");
  pg.create_role(user);

  Command psql;
  psql.argv = {pg_binary("psql").string(),
               "-X",
               "-At",
               "-v",
               "ON_ERROR_STOP=1",
               "-c",
               "SELECT current_user || '|' || ssl::text FROM pg_stat_ssl "
               "WHERE pid = pg_backend_pid()"};
  psql.env = pg.conninfo(user.name, user.password).env();
  RunResult ok = run_command(psql, 60s);
  ASSERT_TRUE(ok.ok()) << ok.status_text() << "\n" << ok.output;
  EXPECT_EQ(ok.output, user.name + "|true\n");

  // Same client, wrong password: psql fails with the server's message.
  for (auto& [k, v] : psql.env) {
    if (k == "PGPASSWORD") {
      v = "not it";
    }
  }
  RunResult bad = run_command(psql, 60s);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("password authentication failed"), std::string::npos) << bad.output;
}

// --- private clusters, mTLS, teardown -----------------------------------------------

TEST(FixtureCluster, PrivateClusterRunsBesideSharedOneWithClientCertAuth) {
  PgCluster& shared = shared_cluster();

  // Client CA lives outside the cluster (as a test would make it); the fixture copies it.
  TempDir tmp("pgwarden-fixture-test");
  const fs::path& pki = tmp.path();
  CertAuthority client_ca = CertAuthority::create(pki, "client_ca", "client CA");
  LeafSpec leaf;
  leaf.common_name = "mtls_alice";
  leaf.emails = {"alice@example.com"};
  leaf.usage = CertUsage::kClient;
  CertFiles alice_cert = client_ca.issue(leaf, "alice");
  LeafSpec mallory_spec = leaf;
  mallory_spec.common_name = "mallory";
  CertFiles mallory_cert = client_ca.issue(mallory_spec, "mallory");

  ClusterOptions options;
  options.client_ca_file = client_ca.cert();
  options.roles = {RoleSpec{"mtls_alice", AuthMethod::kCert}};
  options.settings = {{"application_name", "'private'"}};
  auto priv = PgCluster::start(options);
  EXPECT_NE(priv->port(), shared.port());
  EXPECT_NE(priv->dir(), shared.dir());

  ConnInfo ci = priv->conninfo("mtls_alice");
  ci.set("sslcert", alice_cert.cert.string());
  ci.set("sslkey", alice_cert.key.string());
  ConnectOutcome out = try_connect(ci);
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(current_user(out.conn.get()), "mtls_alice");
  EXPECT_EQ(
      query_value(out.conn.get(), "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"),
      "/CN=mtls_alice");

  // A valid certificate for another name does not log in as alice.
  ci.set("sslcert", mallory_cert.cert.string());
  ci.set("sslkey", mallory_cert.key.string());
  ConnectOutcome wrong_cn = try_connect(ci);
  ASSERT_FALSE(wrong_cn.ok());
  EXPECT_EQ(wrong_cn.sqlstate, "28000") << wrong_cn.error;

  // No certificate at all.
  ConnectOutcome no_cert = try_connect(priv->conninfo("mtls_alice"));
  ASSERT_FALSE(no_cert.ok());

  // The shared cluster is untouched and still serving.
  RoleSpec user = role(AuthMethod::kTrust, "beside");
  shared.create_role(user);
  ConnectOutcome shared_conn = try_connect(shared.conninfo(user.name));
  ASSERT_TRUE(shared_conn.ok()) << shared_conn.error;
}

TEST(FixtureCluster, DestroyedClusterRemovesItsDirectoryAndStopsListening) {
  auto pg = PgCluster::start();
  const fs::path dir = pg->dir();
  const std::uint16_t port = pg->port();
  const pid_t pid = pg->postmaster_pid();
  ASSERT_TRUE(fs::exists(dir / "data" / "PG_VERSION"));
  ASSERT_TRUE(tcp_accepts(port));
  RoleSpec user = role(AuthMethod::kTrust, "gone");
  pg->create_role(user);
  ConnectOutcome live = try_connect(pg->conninfo(user.name));
  ASSERT_TRUE(live.ok()) << live.error;

  pg.reset();
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(tcp_accepts(port));
  // The open session was ended by the shutdown.
  QueryResult after = run_query(live.conn.get(), "SELECT 1");
  EXPECT_FALSE(after.ok());
  // The postmaster was reaped, not merely signalled.
  EXPECT_NE(::waitpid(pid, nullptr, WNOHANG), 0);
}

// A listener already on the port (on either loopback address) must not leave the
// cluster half-bound: clients of that address would reach a stranger. The fixture
// notices the bind failure and moves to a free port.
TEST(FixtureCluster, PortTakenOnOneAddressMovesClusterToAnotherPort) {
  std::vector<int> families = {AF_INET};
  if (PgCluster::start()->listens_ipv6()) {
    families.push_back(AF_INET6);
  }
  for (int family : families) {
    SCOPED_TRACE(family == AF_INET ? "127.0.0.1 taken" : "::1 taken");
    int blocker = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(blocker, 0);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *a;
    } else {
      int one = 1;
      ASSERT_EQ(::setsockopt(blocker, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one), 0);
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      len = sizeof *a;
    }
    ASSERT_EQ(::bind(blocker, reinterpret_cast<sockaddr*>(&ss), len), 0);
    ASSERT_EQ(::listen(blocker, 1), 0);
    ASSERT_EQ(::getsockname(blocker, reinterpret_cast<sockaddr*>(&ss), &len), 0);
    const std::uint16_t taken =
        ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);

    ClusterOptions options;
    options.port = taken;
    auto pg = PgCluster::start(options);
    EXPECT_NE(pg->port(), taken);
    EXPECT_NE(pg->server_log().find("could not bind"), std::string::npos) << pg->server_log();
    RoleSpec user = role(AuthMethod::kTrust, "moved");
    pg->create_role(user);
    ConnectOutcome out = try_connect(pg->conninfo(user.name));
    EXPECT_TRUE(out.ok()) << out.error;
    ::close(blocker);
  }
}

TEST(FixtureCluster, StartFailureReportsTheServerLog) {
  ClusterOptions options;
  options.settings = {{"shared_buffers", "'not-a-size'"}};
  try {
    auto pg = PgCluster::start(options);
    FAIL() << "cluster started with an invalid setting";
  } catch (const FixtureError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("server log"), std::string::npos) << what;
    EXPECT_NE(what.find("shared_buffers"), std::string::npos) << what;
  }
}

// The test process dies without running destructors: PR_SET_PDEATHSIG stops the
// postmaster and the watchdog removes the directory.
TEST(FixtureCluster, CrashedTestProcessLeavesNoServerOrDirectoryBehind) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    try {
      auto pg = PgCluster::start();
      std::string info = pg->dir().string() + "\n" + std::to_string(pg->port()) + "\n";
      ssize_t n = ::write(fds[1], info.data(), info.size());
      (void)n;
      ::close(fds[1]);
      ::raise(SIGKILL);  // no destructors, no atexit
    } catch (...) {
    }
    ::_exit(1);
  }
  ::close(fds[1]);
  std::string info;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) {
    info.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child failed to start a cluster";
  const size_t nl = info.find('\n');
  ASSERT_NE(nl, std::string::npos) << info;
  const fs::path dir = info.substr(0, nl);
  const auto port = static_cast<std::uint16_t>(std::stoi(info.substr(nl + 1)));

  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while ((fs::exists(dir) || tcp_accepts(port)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_FALSE(tcp_accepts(port)) << "postmaster outlived the test process";
  EXPECT_FALSE(fs::exists(dir)) << "directory left behind: " << dir;
}

// As root the suite exercises the run-as-postgres path; this re-runs a few tests of this
// binary as the unprivileged `postgres` user to exercise the run-as-ourselves path.
TEST(FixtureCluster, NonRootPathWorks) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "already running unprivileged";
  }
  const fs::path self = fs::read_symlink("/proc/self/exe");
  auto who = server_run_as();
  ASSERT_TRUE(who.has_value());
  // The binary must be reachable by that user (a build tree under /root would not be).
  RunResult reach = run_command(
      Command{{"/usr/sbin/runuser", "-u", who->name, "--", "/usr/bin/test", "-x", self.string()}},
      30s);
  if (!reach.ok()) {
    GTEST_SKIP() << "test binary not executable by " << who->name << ": " << self;
  }
  Command cmd;
  cmd.argv = {"/usr/sbin/runuser",
              "-u",
              who->name,
              "--",
              self.string(),
              "--gtest_filter=FixtureCluster.ScramUserConnectsWithVerifyFullOverEveryHostForm:"
              "FixtureCluster.PsqlConnectsWithVerifyFullThroughEnvironment:"
              "FixtureCluster.DestroyedClusterRemovesItsDirectoryAndStopsListening:"
              "FixtureCluster.CrashedTestProcessLeavesNoServerOrDirectoryBehind"};
  cmd.working_dir = "/";
  RunResult r = run_command(cmd, 300s);
  ASSERT_TRUE(r.ok()) << r.status_text() << "\n" << r.output;
  EXPECT_NE(r.output.find("[  PASSED  ] 4 tests"), std::string::npos) << r.output;
}

// --- certificate helper ---------------------------------------------------------------

TEST(FixtureCerts, LeafCarriesRequestedNamesAndVerifiesAgainstItsCa) {
  TempDir tmp("pgwarden-fixture-test");
  const fs::path& dir = tmp.path();
  CertAuthority root = CertAuthority::create(dir, "root", "Root CA", KeyType::kRsa2048);
  CertAuthority inter = root.issue_intermediate("inter", "Intermediate CA");
  LeafSpec spec;
  spec.common_name = "svc.example.test";
  spec.dns_names = {"svc.example.test", "*.svc.example.test"};
  spec.ip_addresses = {"10.1.2.3", "fe80::1"};
  spec.emails = {"ops@example.test"};
  spec.usage = CertUsage::kClient;
  CertFiles leaf = inter.issue(spec, "leaf");

  EXPECT_EQ(fs::status(leaf.key).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::string text =
      run_checked(Command{{"openssl", "x509", "-in", leaf.cert.string(), "-noout", "-text"}}, 30s);
  EXPECT_NE(text.find("DNS:svc.example.test"), std::string::npos) << text;
  EXPECT_NE(text.find("DNS:*.svc.example.test"), std::string::npos) << text;
  EXPECT_NE(text.find("IP Address:10.1.2.3"), std::string::npos) << text;
  EXPECT_NE(text.find("IP Address:FE80:0:0:0:0:0:0:1"), std::string::npos) << text;
  EXPECT_NE(text.find("email:ops@example.test"), std::string::npos) << text;
  EXPECT_NE(text.find("TLS Web Client Authentication"), std::string::npos) << text;
  EXPECT_NE(text.find("CA:FALSE"), std::string::npos) << text;

  // Chain verifies through the intermediate, and not without it.
  RunResult chain =
      run_command(Command{{"openssl", "verify", "-CAfile", root.cert().string(), "-untrusted",
                           inter.cert().string(), "-purpose", "sslclient", leaf.cert.string()}},
                  30s);
  EXPECT_TRUE(chain.ok()) << chain.output;
  RunResult no_inter = run_command(
      Command{{"openssl", "verify", "-CAfile", root.cert().string(), leaf.cert.string()}}, 30s);
  EXPECT_FALSE(no_inter.ok()) << no_inter.output;
  // A client certificate is not a server certificate.
  RunResult as_server =
      run_command(Command{{"openssl", "verify", "-CAfile", root.cert().string(), "-untrusted",
                           inter.cert().string(), "-purpose", "sslserver", leaf.cert.string()}},
                  30s);
  EXPECT_FALSE(as_server.ok()) << as_server.output;
}

TEST(FixtureCerts, RejectsNamesThatCouldInjectConfig) {
  TempDir tmp("pgwarden-fixture-test");
  const fs::path& dir = tmp.path();
  EXPECT_THROW(CertAuthority::create(dir, "ca", "x\n[ext]\nbasicConstraints=CA:TRUE"),
               FixtureError);
  EXPECT_THROW(CertAuthority::create(dir, "../escape", "ok"), FixtureError);
  EXPECT_THROW(CertAuthority::create(dir, "ca", "$ENV::HOME"), FixtureError);
  CertAuthority ca = CertAuthority::create(dir, "ca", "ok");
  LeafSpec spec;
  spec.common_name = "leaf";
  spec.dns_names = {"a.test\nDNS.9 = evil.test"};
  EXPECT_THROW(ca.issue(spec, "leaf"), FixtureError);
  spec.dns_names = {};
  spec.ip_addresses = {"127.0.0.1,DNS:evil"};
  EXPECT_THROW(ca.issue(spec, "leaf"), FixtureError);
  spec.ip_addresses = {};
  spec.days = 0;
  EXPECT_THROW(ca.issue(spec, "leaf"), FixtureError);
}

// --- process and conninfo helpers -------------------------------------------------------

TEST(FixtureProcess, RunCommandReportsExitSignalTimeoutAndStdin) {
  RunResult ok = run_command(
      Command{{"/bin/sh", "-c", "cat; echo err >&2; exit 3"}, {}, {}, {}, 0, false, "hello\n"},
      10s);
  EXPECT_EQ(ok.exit_code, 3);
  EXPECT_EQ(ok.output, "hello\nerr\n");

  RunResult killed = run_command(Command{{"/bin/sh", "-c", "kill -TERM $$"}}, 10s);
  EXPECT_EQ(killed.term_signal, SIGTERM);

  const auto start = std::chrono::steady_clock::now();
  RunResult slow = run_command(Command{{"/bin/sleep", "30"}}, 300ms);
  EXPECT_TRUE(slow.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);

  // A grandchild that keeps stdout open does not hold run_command past the child's exit.
  const auto start2 = std::chrono::steady_clock::now();
  RunResult bg = run_command(Command{{"/bin/sh", "-c", "sleep 20 & echo done"}}, 15s);
  EXPECT_FALSE(bg.timed_out);
  EXPECT_EQ(bg.output, "done\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start2, 10s);

  EXPECT_THROW(run_command(Command{{"/nonexistent/binary"}}, 1s), FixtureError);
  EXPECT_THROW(run_checked(Command{{"/bin/false"}}, 5s), FixtureError);
}

TEST(FixtureProcess, ChildrenDoNotInheritPgVariables) {
  ::setenv("PGSSLMODE", "disable", 1);
  RunResult r = run_command(
      Command{{"/bin/sh", "-c", "echo \"[${PGSSLMODE-unset}] [$PGHOST]\""}, {{"PGHOST", "h"}}},
      10s);
  ::unsetenv("PGSSLMODE");
  EXPECT_EQ(r.output, "[unset] [h]\n");
}

TEST(FixtureTempDir, RemovedOnDestructionAndPrefixValidated) {
  fs::path kept;
  {
    TempDir tmp("pgwarden-tempdir-test");
    kept = tmp.path();
    fs::create_directories(tmp / "a" / "b");
    std::ofstream(tmp / "a" / "b" / "f") << "x";
    EXPECT_EQ(fs::status(kept).permissions() & fs::perms::all, fs::perms::owner_all);
  }
  EXPECT_FALSE(fs::exists(kept));
  EXPECT_THROW(TempDir("../escape"), FixtureError);
  EXPECT_THROW(TempDir(""), FixtureError);
}

TEST(FixtureConnInfo, QuotingRoundTripsThroughLibpq) {
  ConnInfo ci;
  ci.set("host", "/tmp/dir with space");
  ci.set("password", "it's a \\ back'slash'");
  ci.set("user", "");
  ci.set("user", "bob");  // replaces, keeps position
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(ci.str().c_str(), &err);
  ASSERT_NE(opts, nullptr) << (err != nullptr ? err : "");
  std::map<std::string, std::string> got;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) {
      got[o->keyword] = o->val;
    }
  }
  PQconninfoFree(opts);
  EXPECT_EQ(got["host"], "/tmp/dir with space");
  EXPECT_EQ(got["password"], "it's a \\ back'slash'");
  EXPECT_EQ(got["user"], "bob");
  EXPECT_EQ(ci.params().size(), 3u);

  auto env = ci.env();
  ASSERT_EQ(env.size(), 3u);
  EXPECT_EQ(env[0], (std::pair<std::string, std::string>{"PGHOST", "/tmp/dir with space"}));
  ci.set("not_a_libpq_key", "x");
  EXPECT_THROW(ci.env(), FixtureError);
}

TEST(FixtureConnInfo, SqlstateParsing) {
  EXPECT_EQ(sqlstate_from_message("connection to server failed: FATAL:  28P01: password"), "28P01");
  EXPECT_EQ(sqlstate_from_message("FATAL:  28P01: password authentication failed"), "28P01");
  EXPECT_EQ(sqlstate_from_message("x\nERROR:  42501: permission denied"), "42501");
  EXPECT_EQ(sqlstate_from_message("FATAL:  password authentication failed"), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  28p01: lower case"), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  28P0"), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  "), "");
  EXPECT_EQ(sqlstate_from_message(""), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  28P01:"), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  28P01:  two spaces"), "");
  EXPECT_EQ(sqlstate_from_message("FATAL:  FATAL:  08P01: x"), "08P01");
}

}  // namespace
}  // namespace pgwarden::fixture
