// Integration tests of pgwarden's client-facing TLS, its handling of broken upstreams, and
// cancel routing (issue 3, "Done when": Client TLS, Upstream, Cancel), against the shared
// PostgreSQL 15 cluster with real clients (libpq, psql) and the fixture's RawClient where a
// test must choose every byte (SSLRequest with injected bytes, direct TLS with or without
// ALPN, forged cancel keys).
//
// One pgwarden process serves the whole suite. It has one listener per situation, each naming
// its own backend, so a single start covers the TLS modes, client certificates, SNI, and five
// broken upstreams (wrong CA, wrong host name, no TLS, never answers, wrong password). Every
// backend that works logs in as one SCRAM role with static credentials.
//
// Secrets are distinctive constants (kUpstreamPassword, kBadUpstreamPassword) so that a scan
// of logs and audit files can look for them; they reach pgwarden only through environment
// variables, never through the configuration text.
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "config/users_file.h"
#include "fixture/certs.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/shared_suite.h"
#include "fixture/temp_dir.h"
#include "fixture/test_util.h"
#include "wire/bytes.h"
#include "wire/startup.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The upstream role's password: only pgwarden knows it (static credentials).
constexpr std::string_view kUpstreamPassword = "tlsit-UpPw-9qK3vX7mZ2rT8wLb";
// A wrong password configured on the "badpw" backend: it must not leak either.
constexpr std::string_view kBadUpstreamPassword = "tlsit-BadPw-4hN6cJ1pY5sD0fGe";

constexpr std::string_view kSniName = "reporting.localtest";

// A TCP listener on 127.0.0.1 bound to a kernel-chosen port; closes its descriptor.
class LoopbackListener {
 public:
  explicit LoopbackListener(int backlog) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      throw FixtureError("socket() failed");
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, backlog) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd_);
      throw FixtureError("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;
  ~LoopbackListener() { ::close(fd_); }
  int fd() const { return fd_; }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// What a PostgreSQL server with ssl=off does with an SSLRequest: answers 'N'. It records what
// each connection sent, so a test can show that pgwarden never went on in plaintext.
class NoTlsServer {
 public:
  NoTlsServer() : listener_(16), thread_([this](std::stop_token st) { loop(st); }) {}
  ~NoTlsServer() {
    thread_.request_stop();
    thread_.join();
  }
  std::uint16_t port() const { return listener_.port(); }
  int ssl_requests() const { return ssl_requests_; }
  int other_first_packets() const { return other_first_packets_; }
  // Bytes received after our 'N', summed over every connection (a StartupMessage in
  // plaintext would be a silent downgrade).
  long bytes_after_answer() const { return bytes_after_answer_; }

 private:
  void loop(const std::stop_token& st) {
    while (!st.stop_requested()) {
      pollfd p{listener_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) {
        continue;
      }
      const int c = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      serve(c, st);
      ::close(c);
    }
  }
  // Reads what arrives within `ms` (0 bytes on EOF or silence).
  static long read_some(int c, std::byte* into, std::size_t max, int ms) {
    pollfd p{c, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) {
      return 0;
    }
    const auto n = ::recv(c, into, max, 0);
    return n > 0 ? n : -1;
  }
  void serve(int c, const std::stop_token& st) {
    std::array<std::byte, 8> first{};
    std::size_t got = 0;
    const auto deadline = Clock::now() + 5s;
    while (got < first.size() && Clock::now() < deadline && !st.stop_requested()) {
      const long n = read_some(c, first.data() + got, first.size() - got, 100);
      if (n < 0) {
        break;
      }
      got += static_cast<std::size_t>(n);
    }
    wire::ByteVector ssl_request;
    wire::encode(wire::SslRequest{}, ssl_request);
    if (got != first.size() || !std::equal(first.begin(), first.end(), ssl_request.begin())) {
      ++other_first_packets_;
      return;
    }
    ++ssl_requests_;
    const char answer = 'N';
    if (::send(c, &answer, 1, MSG_NOSIGNAL) != 1) {
      return;
    }
    // Whatever the client sends next, until it closes (or 3 s of silence).
    std::array<std::byte, 1024> sink{};
    const auto until = Clock::now() + 3s;
    while (Clock::now() < until && !st.stop_requested()) {
      const long n = read_some(c, sink.data(), sink.size(), 100);
      if (n < 0) {
        break;
      }
      bytes_after_answer_ += n;
    }
  }

  LoopbackListener listener_;
  std::atomic<int> ssl_requests_{0};
  std::atomic<int> other_first_packets_{0};
  std::atomic<long> bytes_after_answer_{0};
  std::jthread thread_;
};

struct Suite {
  std::string role;  // the upstream role (static credentials)
  std::unique_ptr<TempDir> dir;
  std::optional<CertAuthority> client_ca;
  std::optional<CertAuthority> rogue_ca;  // neither the cluster's nor the clients' CA
  CertFiles client_cert;                  // issued by client_ca, clientAuth
  CertFiles rogue_client_cert;            // issued by rogue_ca
  CertFiles sni_cert;                     // CN=reporting.localtest, by the cluster's CA
  std::string client_cn;
  std::unique_ptr<NoTlsServer> no_tls;
  std::unique_ptr<LoopbackListener> blackhole;  // accepts SYNs, never accept()s
  // Listener ports.
  std::uint16_t main = 0;       // tls=require, trust, SNI certificate, backend app
  std::uint16_t mtls = 0;       // tls=require, client_cert=require, auth=cert
  std::uint16_t certopt = 0;    // tls=allow, client_cert=optional, auth=cert
  std::uint16_t wrongca = 0;    // backend verified against a CA that did not sign it
  std::uint16_t wrongname = 0;  // backend tls_server_name = "wrong.example"
  std::uint16_t notls = 0;      // backend answers 'N' to SSLRequest
  std::uint16_t silent = 0;     // backend accepts TCP and never answers; connect_timeout 1s
  std::uint16_t badpw = 0;      // backend with a wrong static password
  std::unique_ptr<PgwardenProcess> proxy;
};

class ProxyTls : public SharedSuite<Suite, ProxyTls> {
  friend class SharedSuite<Suite, ProxyTls>;  // calls build_suite

 protected:
  static void build_suite(Suite& s) {
    PgCluster& pg = shared_cluster();
    s.role = unique_name("tlsit_app");
    pg.create_role(RoleSpec{s.role, AuthMethod::kScram, std::string(kUpstreamPassword), false, ""});

    s.dir = std::make_unique<TempDir>("tlsit");
    s.client_ca = CertAuthority::create(s.dir->path(), "clients-ca", "pgwarden tlsit client CA");
    s.rogue_ca = CertAuthority::create(s.dir->path(), "rogue-ca", "pgwarden tlsit rogue CA");
    s.client_cn = unique_name("tlsit_client");
    LeafSpec client{s.client_cn, {}, {}, {}, CertUsage::kClient};
    s.client_cert = s.client_ca->issue(client, "client");
    s.rogue_client_cert = s.rogue_ca->issue(client, "rogue-client");
    // Signed by the cluster's CA, so one sslrootcert verifies both listener certificates.
    LeafSpec sni{std::string(kSniName), {std::string(kSniName)}, {}, {}, CertUsage::kServer};
    s.sni_cert = pg.ca().issue(sni, unique_name("tlsit_sni"));

    s.no_tls = std::make_unique<NoTlsServer>();
    s.blackhole = std::make_unique<LoopbackListener>(0);

    PgwardenOptions options;
    for (auto* port :
         {&s.main, &s.mtls, &s.certopt, &s.wrongca, &s.wrongname, &s.notls, &s.silent, &s.badpw}) {
      // pick_free_port() probes one at a time: avoid handing out the same port twice.
      do {
        *port = pick_free_port();
      } while (std::count(options.ports.begin(), options.ports.end(), *port) > 0);
      options.ports.push_back(*port);
    }
    options.config = config_text(s, pg);
    options.env = {{"TLSIT_UPSTREAM_PW", std::string(kUpstreamPassword)},
                   {"TLSIT_BAD_PW", std::string(kBadUpstreamPassword)}};
    s.proxy = PgwardenProcess::start(options);
  }

  static std::string config_text(const Suite& s, const PgCluster& pg) {
    const std::string upstream = toml_quote("localhost:" + std::to_string(pg.port()));
    const auto& cert = pg.server_cert();
    auto listener = [&](const std::string& name, std::uint16_t port, const std::string& backend,
                        const std::string& extra) {
      return "[[listener]]\nname = " + toml_quote(name) +
             "\nlisten = " + toml_quote("127.0.0.1:" + std::to_string(port)) +
             "\nbackend = " + toml_quote(backend) + "\ntls_cert = " + toml_quote(cert.cert) +
             "\ntls_key = " + toml_quote(cert.key) + "\n" + extra + "\n";
    };
    auto backend = [&](const std::string& name, const std::string& address,
                       const std::string& extra) {
      return "[backend." + name + "]\naddress = " + address + "\ntls = \"verify-full\"\n" + extra +
             "credentials = \"static\"\nuser = " + toml_quote(s.role) + "\n";
    };
    const std::string trust = "tls = \"require\"\nauth = [\"trust\"]\n";
    const std::string cluster_ca = "tls_ca = " + toml_quote(pg.ca_cert()) + "\n";
    const std::string good_pw = "password = \"${TLSIT_UPSTREAM_PW}\"\n";

    std::string t = "[server]\nworkers = 2\nshutdown_grace = \"2s\"\n\n";
    t += "[audit]\npath = \"@DIR@/audit.jsonl\"\n\n";
    t += listener("main", s.main, "app", trust);
    t += "[[listener.sni]]\nserver_names = [" + toml_quote(std::string(kSniName)) +
         "]\ncert = " + toml_quote(s.sni_cert.cert) + "\nkey = " + toml_quote(s.sni_cert.key) +
         "\n\n";
    t += listener("mtls", s.mtls, "app",
                  "tls = \"require\"\nclient_ca = " + toml_quote(s.client_ca->cert()) +
                      "\nclient_cert = \"require\"\nauth = [\"cert\"]\nauth_failure_limit = 0\n");
    t += listener("certopt", s.certopt, "app",
                  "tls = \"allow\"\nclient_ca = " + toml_quote(s.client_ca->cert()) +
                      "\nclient_cert = \"optional\"\nauth = [\"cert\"]\nauth_failure_limit = 0\n");
    t += listener("wrongca", s.wrongca, "wrongca", trust);
    t += listener("wrongname", s.wrongname, "wrongname", trust);
    t += listener("notls", s.notls, "notls", trust);
    t += listener("silent", s.silent, "silent", trust);
    t += listener("badpw", s.badpw, "badpw", trust);

    t += backend("app", upstream, cluster_ca + good_pw) + "\n";
    t += backend("wrongca", upstream,
                 "tls_ca = " + toml_quote(s.rogue_ca->cert()) + "\n" + good_pw) +
         "\n";
    t += backend("wrongname", upstream,
                 cluster_ca + "tls_server_name = \"wrong.example\"\n" + good_pw) +
         "\n";
    t += backend("notls", toml_quote("127.0.0.1:" + std::to_string(s.no_tls->port())),
                 cluster_ca + good_pw) +
         "\n";
    t += backend("silent", toml_quote("127.0.0.1:" + std::to_string(s.blackhole->port())),
                 cluster_ca + "connect_timeout = \"1s\"\n" + good_pw) +
         "\n";
    t += backend("badpw", upstream, cluster_ca + "password = \"${TLSIT_BAD_PW}\"\n") + "\n";
    return t;
  }

  static PgCluster& pg() { return shared_cluster(); }
  static Suite& s() { return *s_; }

  // libpq through pgwarden: host=127.0.0.1, verify-full against the cluster's CA.
  static ConnInfo via(std::uint16_t port, const std::string& user = "alice") {
    ConnInfo ci = pg().conninfo(user, "", HostForm::kIpv4);
    ci.set("port", std::to_string(port));
    ci.set("application_name", "proxy_tls_test");
    return ci;
  }

  static TlsClientOptions verify_full(const std::string& host = "127.0.0.1") {
    TlsClientOptions o;
    o.ca_file = pg().ca_cert();
    o.expected_host = host;
    return o;
  }

  // SSLRequest, 'S', then a handshake with `options`.
  static std::unique_ptr<RawClient> tls_dial(std::uint16_t port, const TlsClientOptions& options,
                                             TlsOutcome* outcome) {
    auto c = RawClient::dial("127.0.0.1", port);
    c->write_ssl_request();
    const auto answer = c->read_byte();
    EXPECT_EQ(answer, 'S');
    *outcome = answer == 'S' ? c->start_tls(options) : TlsOutcome{false, "no 'S'"};
    return c;
  }

  static std::vector<std::pair<std::string, std::string>> startup(const std::string& user) {
    return {{"user", user}, {"database", "postgres"}, {"application_name", "proxy_tls_test"}};
  }

  // psql with `conninfo` running `sql` (one -c each), -X -w -At; output and status.
  static RunResult psql(const ConnInfo& conninfo, const std::vector<std::string>& sql) {
    Command cmd;
    cmd.argv = {pg_binary("psql").string(), "-X", "-w",          "-At", "-v",
                "ON_ERROR_STOP=1",          "-d", conninfo.str()};
    for (const auto& s : sql) {
      cmd.argv.push_back("-c");
      cmd.argv.push_back(s);
    }
    return run_command(cmd, 60s);
  }

  // Connects through `port` and expects a refusal; returns libpq's outcome.
  static ConnectOutcome refused(const ConnInfo& ci) {
    ConnectOutcome out = try_connect(ci, 30s);
    EXPECT_FALSE(out.ok()) << "connected through " << ci.str();
    return out;
  }
};

// ---------------------------------------------------------------------------------------
// Client TLS

TEST_F(ProxyTls, TlsRequireRefusesAPlaintextClientWith28000) {
  ConnInfo plain = via(s().main);
  plain.set("sslmode", "disable");
  auto out = refused(plain);
  EXPECT_EQ(out.sqlstate, "28000") << out.error;
  EXPECT_TRUE(contains(out.error, "TLS required")) << out.error;

  // The same with a hand-made StartupMessage and no SSLRequest at all.
  auto c = RawClient::dial("127.0.0.1", s().main);
  c->write_startup(startup("alice"));
  auto error = c->read_error();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->severity, "FATAL");
  EXPECT_EQ(error->sqlstate, "28000");
  EXPECT_TRUE(contains(error->message, "TLS required")) << error->message;
  EXPECT_TRUE(c->wait_closed(10s));

  // Control: the same listener and user over TLS get in.
  auto ok = try_connect(via(s().main));
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(query_value(ok.conn.get(), "SELECT current_user"), s().role);
}

TEST_F(ProxyTls, RequiredClientCertificateCannotBeBypassedWithoutTls) {
  ConnInfo plain = via(s().mtls);
  plain.set("sslmode", "disable");
  auto out = refused(plain);
  EXPECT_EQ(out.sqlstate, "28000") << out.error;

  auto c = RawClient::dial("127.0.0.1", s().mtls);
  c->write_startup(startup(s().client_cn));
  auto error = c->read_error();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->sqlstate, "28000");
  EXPECT_TRUE(c->wait_closed(10s));
}

TEST_F(ProxyTls, RequiredClientCertificateCannotBeBypassedWithoutACertificate) {
  // libpq over TLS but without a certificate (there is no ~/.postgresql for it to find).
  ConnInfo no_cert = via(s().mtls, s().client_cn);
  no_cert.set("sslcert", (s().dir->path() / "no-such.crt").string());
  no_cert.set("sslkey", (s().dir->path() / "no-such.key").string());
  auto out = refused(no_cert);
  // Refused in the handshake (no sqlstate) or, at the latest, with 28000.
  EXPECT_TRUE(out.sqlstate.empty() || out.sqlstate == "28000") << out.error;

  // RawClient: with TLS 1.3 the client may finish its side of the handshake before the
  // server refuses it; whatever happens, no session may come out of it.
  TlsOutcome tls;
  auto c = tls_dial(s().mtls, verify_full(), &tls);
  if (tls.ok) {
    try {
      c->write_startup(startup(s().client_cn));
      LoginResult login = c->login_result();
      EXPECT_NE(login.status, LoginStatus::kReady);
      EXPECT_FALSE(login.authenticated);
      if (login.error) {
        EXPECT_EQ(login.error->sqlstate, "28000") << login.error->message;
      }
    } catch (const FixtureError& e) {
      // Writing to a connection the server has already dropped: refused as well.
      SUCCEED() << e.what();
    }
  }

  // A certificate from another CA is refused the same way.
  ConnInfo rogue = via(s().mtls, s().client_cn);
  rogue.set("sslcert", s().rogue_client_cert.cert.string());
  rogue.set("sslkey", s().rogue_client_cert.key.string());
  auto rogue_out = refused(rogue);
  EXPECT_TRUE(rogue_out.sqlstate.empty() || rogue_out.sqlstate == "28000") << rogue_out.error;
}

TEST_F(ProxyTls, ValidClientCertificateGetsIn) {
  ConnInfo ci = via(s().mtls, s().client_cn);
  ci.set("sslcert", s().client_cert.cert.string());
  ci.set("sslkey", s().client_cert.key.string());
  auto out = try_connect(ci);
  ASSERT_TRUE(out.ok()) << out.error;
  EXPECT_EQ(query_value(out.conn.get(), "SELECT current_user"), s().role);

  // RawClient with the certificate: the whole login, and a query.
  TlsClientOptions o = verify_full();
  o.client_cert = s().client_cert.cert;
  o.client_key = s().client_cert.key;
  TlsOutcome tls;
  auto c = tls_dial(s().mtls, o, &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup(startup(s().client_cn));
  LoginResult login = c->login_result();
  ASSERT_TRUE(login.ready()) << (login.error ? login.error->message : "not ready");
  auto r = c->simple_query("SELECT 40 + 2");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0][0], "42");
}

TEST_F(ProxyTls, CertAuthOnATlsAllowListenerRefusesPlaintext) {
  // tls = "allow": plaintext is accepted at the TLS level, but the cert method cannot apply
  // to it, so the client is refused rather than let in without an identity.
  ConnInfo plain = via(s().certopt, s().client_cn);
  plain.set("sslmode", "disable");
  auto out = refused(plain);
  EXPECT_EQ(out.sqlstate, "28000") << out.error;

  // TLS without a certificate: also no applicable method.
  auto no_cert = via(s().certopt, s().client_cn);
  no_cert.set("sslcert", (s().dir->path() / "no-such.crt").string());
  no_cert.set("sslkey", (s().dir->path() / "no-such.key").string());
  auto out2 = refused(no_cert);
  EXPECT_EQ(out2.sqlstate, "28000") << out2.error;

  // With the certificate it works.
  ConnInfo ci = via(s().certopt, s().client_cn);
  ci.set("sslcert", s().client_cert.cert.string());
  ci.set("sslkey", s().client_cert.key.string());
  auto ok = try_connect(ci);
  ASSERT_TRUE(ok.ok()) << ok.error;
  EXPECT_EQ(query_value(ok.conn.get(), "SELECT 'cert-ok'"), "cert-ok");
}

TEST_F(ProxyTls, TlsAllowWithRequiredClientCertificateIsARejectedConfiguration) {
  // With tls = "allow" a plaintext client would skip the certificate requirement, so the
  // combination cannot even be started.
  const auto& cert = pg().server_cert();
  PgwardenOptions o;
  o.wait_ready = false;
  o.config = "[[listener]]\nname = \"x\"\nlisten = " +
             toml_quote("127.0.0.1:" + std::to_string(pick_free_port())) +
             "\ntls = \"allow\"\ntls_cert = " + toml_quote(cert.cert) +
             "\ntls_key = " + toml_quote(cert.key) +
             "\nclient_ca = " + toml_quote(s().client_ca->cert()) +
             "\nclient_cert = \"require\"\nauth = [\"cert\"]\n\n[backend.app]\naddress = " +
             toml_quote("localhost:" + std::to_string(pg().port())) +
             "\ntls_ca = " + toml_quote(pg().ca_cert()) + "\nuser = " + toml_quote(s().role) + "\n";
  auto p = PgwardenProcess::start(o);
  EXPECT_EQ(p->wait_exit(20s), 1) << p->log();
  EXPECT_TRUE(contains(p->log(), "client_cert = \"require\" needs tls = \"require\"")) << p->log();
}

TEST_F(ProxyTls, BytesAfterSslRequestBeforeTheHandshakeAreRefused) {
  // SSLRequest and a StartupMessage in one write: a machine in the middle could have appended
  // the StartupMessage, hoping it is read as if it had come over TLS (CVE-2021-23214).
  wire::ByteVector bytes;
  wire::encode(wire::SslRequest{}, bytes);
  {
    wire::Writer w(bytes);
    auto at = w.begin_untyped();
    w.u16(3);
    w.u16(0);
    for (const auto& [k, v] : startup("alice")) {
      w.cstring(k);
      w.cstring(v);
    }
    w.u8(0);
    w.end_message(at);
  }
  auto c = RawClient::dial("127.0.0.1", s().main);
  c->set_read_timeout(5s);
  c->write_raw(bytes);
  std::optional<Message> m;
  try {
    m = c->read_message();
  } catch (const FixtureError& e) {
    // An 'S' alone would be read as the start of a message that never completes.
    FAIL() << "pgwarden did not refuse the injected bytes: " << e.what();
  }
  if (m) {
    ASSERT_EQ(m->type, 'E') << "pgwarden answered '" << m->type << "'";
    auto parsed = wire::parse_error_response(m->body);
    ASSERT_TRUE(parsed.has_value());
    auto e = to_server_error(*parsed);
    EXPECT_EQ(e.severity, "FATAL");
    EXPECT_EQ(e.sqlstate, "08P01");
    EXPECT_TRUE(contains(e.message, "unencrypted data")) << e.message;
  }
  EXPECT_TRUE(c->wait_closed(10s));

  // Also on a listener that would have accepted plaintext (tls = "allow").
  auto c2 = RawClient::dial("127.0.0.1", s().certopt);
  c2->set_read_timeout(5s);
  c2->write_raw(bytes);
  auto error = c2->read_error();
  if (error) {
    EXPECT_EQ(error->sqlstate, "08P01");
  }
  EXPECT_TRUE(c2->wait_closed(10s));
}

TEST_F(ProxyTls, GssEncRequestGetsNAndTheConnectionProceeds) {
  auto c = RawClient::dial("127.0.0.1", s().main);
  c->write_gssenc_request();
  EXPECT_EQ(c->read_byte(), 'N');
  c->write_ssl_request();
  ASSERT_EQ(c->read_byte(), 'S');
  TlsOutcome tls = c->start_tls(verify_full());
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup(startup("alice"));
  LoginResult login = c->login_result();
  ASSERT_TRUE(login.ready()) << (login.error ? login.error->message : "not ready");
  auto r = c->simple_query("SELECT current_user");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0][0], s().role);
}

TEST_F(ProxyTls, DirectTlsWithAlpnPostgresqlWorks) {
  auto c = RawClient::dial("127.0.0.1", s().main);
  TlsClientOptions o = verify_full();
  o.alpn = {"postgresql"};
  TlsOutcome tls = c->start_tls(o);
  ASSERT_TRUE(tls.ok) << tls.error;
  EXPECT_EQ(c->alpn_selected(), "postgresql");
  c->write_startup(startup("alice"));
  LoginResult login = c->login_result();
  ASSERT_TRUE(login.ready()) << (login.error ? login.error->message : "not ready");
  EXPECT_TRUE(login.authenticated);
  auto r =
      c->simple_query("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
  ASSERT_TRUE(r.ok()) << (r.error ? r.error->message : "closed");
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(r.rows[0][0], s().role);
  EXPECT_EQ(r.rows[0][1], "t");  // and the upstream leg is TLS too
}

TEST_F(ProxyTls, DirectTlsWithAWrongAlpnIsRefusedInTheHandshake) {
  auto c = RawClient::dial("127.0.0.1", s().main);
  TlsClientOptions o = verify_full();
  o.alpn = {"http/1.1"};
  TlsOutcome tls = c->start_tls(o);
  EXPECT_FALSE(tls.ok) << "handshake completed with ALPN " << c->alpn_selected();
  EXPECT_TRUE(contains(tls.error, "no application protocol")) << tls.error;
  EXPECT_TRUE(c->wait_closed(10s));
}

TEST_F(ProxyTls, DirectTlsWithoutAlpnIsRefusedWith08P01) {
  auto c = RawClient::dial("127.0.0.1", s().main);
  TlsOutcome tls = c->start_tls(verify_full());
  ASSERT_TRUE(tls.ok) << tls.error;
  EXPECT_EQ(c->alpn_selected(), "");
  c->write_startup(startup("alice"));
  LoginResult login = c->login_result();
  EXPECT_EQ(login.status, LoginStatus::kError);
  EXPECT_FALSE(login.authenticated);
  ASSERT_TRUE(login.error.has_value());
  EXPECT_EQ(login.error->sqlstate, "08P01");
  EXPECT_TRUE(contains(login.error->message, "ALPN")) << login.error->message;
}

TEST_F(ProxyTls, SniSelectsTheCertificateForEachHostName) {
  // RawClient: the certificate served for each SNI.
  auto subject_for = [](const std::optional<std::string>& sni) {
    TlsClientOptions o;
    o.ca_file = pg().ca_cert();  // chain verified; the name is checked below
    o.sni = sni;
    TlsOutcome tls;
    auto c = tls_dial(s().main, o, &tls);
    EXPECT_TRUE(tls.ok) << tls.error;
    return c->peer_subject();
  };
  EXPECT_EQ(subject_for(std::string(kSniName)), "CN=" + std::string(kSniName));
  EXPECT_EQ(subject_for(std::string("REPORTING.localtest")), "CN=" + std::string(kSniName));
  EXPECT_EQ(subject_for(std::string("localhost")), "CN=localhost");
  EXPECT_EQ(subject_for(std::nullopt), "CN=localhost");
  EXPECT_EQ(subject_for(std::string("other.localtest")), "CN=localhost");

  // psql with verify-full under both names. hostaddr avoids a DNS lookup; libpq still uses
  // `host` for SNI and for the certificate check.
  ConnInfo reporting = via(s().main);
  reporting.set("host", std::string(kSniName)).set("hostaddr", "127.0.0.1");
  auto r1 = psql(reporting, {"SELECT 'via-' || current_user"});
  EXPECT_TRUE(r1.ok()) << r1.status_text() << "\n" << r1.output;
  EXPECT_TRUE(contains(r1.output, "via-" + s().role)) << r1.output;

  ConnInfo local = via(s().main);
  local.set("host", "localhost").set("hostaddr", "127.0.0.1");
  auto r2 = psql(local, {"SELECT 'via-' || current_user"});
  EXPECT_TRUE(r2.ok()) << r2.status_text() << "\n" << r2.output;
  EXPECT_TRUE(contains(r2.output, "via-" + s().role)) << r2.output;

  // Control: verify-full really checks the name (a name no certificate carries fails).
  ConnInfo other = via(s().main);
  other.set("host", "other.localtest").set("hostaddr", "127.0.0.1");
  auto r3 = psql(other, {"SELECT 1"});
  EXPECT_FALSE(r3.ok()) << r3.output;
  EXPECT_TRUE(contains(r3.output, "other.localtest")) << r3.output;
}

// ---------------------------------------------------------------------------------------
// Upstream

TEST_F(ProxyTls, UpstreamWithAnUntrustedCertificateIsRefusedWith08006) {
  auto out = refused(via(s().wrongca));
  EXPECT_EQ(out.sqlstate, "08006") << out.error;
  EXPECT_TRUE(contains(out.error, "TLS verification")) << out.error;
  EXPECT_TRUE(contains(out.error, "certificate verify failed")) << out.error;
}

TEST_F(ProxyTls, UpstreamWithTheWrongHostNameIsRefusedWith08006) {
  auto out = refused(via(s().wrongname));
  EXPECT_EQ(out.sqlstate, "08006") << out.error;
  EXPECT_TRUE(contains(out.error, "TLS verification")) << out.error;
  EXPECT_TRUE(contains(out.error, "wrong.example")) << out.error;

  // RawClient sees exactly the same FATAL.
  TlsOutcome tls;
  auto c = tls_dial(s().wrongname, verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup(startup("alice"));
  LoginResult login = c->login_result();
  EXPECT_FALSE(login.authenticated);
  ASSERT_TRUE(login.error.has_value());
  EXPECT_EQ(login.error->severity, "FATAL");
  EXPECT_EQ(login.error->sqlstate, "08006");
}

TEST_F(ProxyTls, UpstreamWithoutTlsIsRefusedWith08006AndNeverDowngraded) {
  const int before = s().no_tls->ssl_requests();
  auto out = refused(via(s().notls));
  EXPECT_EQ(out.sqlstate, "08006") << out.error;
  EXPECT_TRUE(contains(out.error, "TLS")) << out.error;
  EXPECT_TRUE(contains(out.error, "does not support TLS")) << out.error;
  // pgwarden asked for TLS, heard 'N', and sent nothing more in plaintext.
  EXPECT_TRUE(wait_until([&] { return s().no_tls->ssl_requests() > before; }, 10s));
  EXPECT_EQ(s().no_tls->other_first_packets(), 0);
  // The server thread reads on after 'N' until pgwarden closes; give it that time.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(s().no_tls->bytes_after_answer(), 0);
}

TEST_F(ProxyTls, UnreachableUpstreamFailsWithinConnectTimeout) {
  // The blackhole completes TCP handshakes (kernel backlog) and never answers, so the wait
  // ends only because of connect_timeout = 1s; the client connect timeout is 30 s.
  auto out = refused(via(s().silent));
  EXPECT_EQ(out.sqlstate, "08006") << out.error;
  EXPECT_TRUE(contains(out.error, "connect_timeout")) << out.error;

  // A second attempt (the backlog may now be full, so even TCP never completes) ends the
  // same way.
  auto out2 = refused(via(s().silent));
  EXPECT_EQ(out2.sqlstate, "08006") << out2.error;
  EXPECT_TRUE(contains(out2.error, "connect_timeout")) << out2.error;
}

TEST_F(ProxyTls, TheClientNeverSeesTheUpstreamPassword) {
  // Every byte a trust client receives through a full login and a few queries.
  TlsOutcome tls;
  auto c = tls_dial(s().main, verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup(startup("alice"));
  std::string received;
  std::vector<char> types;
  auto read_to_ready = [&] {
    for (;;) {
      auto m = c->read_message();
      if (!m) {
        ADD_FAILURE() << "connection ended";
        return;
      }
      types.push_back(m->type);
      received += m->type;
      received.append(reinterpret_cast<const char*>(m->body.data()), m->body.size());
      if (m->type == 'Z') {
        return;
      }
    }
  };
  read_to_ready();
  // Trust: exactly one authentication message, AuthenticationOk.
  EXPECT_EQ(std::count(types.begin(), types.end(), 'R'), 1);
  EXPECT_EQ(std::count(types.begin(), types.end(), 'E'), 0);
  for (const char* sql :
       {"SELECT current_user, session_user", "SHOW ALL",
        "SELECT * FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        "SELECT rolname, rolpassword FROM pg_roles WHERE rolname = current_user"}) {
    c->write_query(sql);
    read_to_ready();
  }
  EXPECT_TRUE(contains(received, s().role));  // control: the capture is real
  EXPECT_FALSE(contains(received, kUpstreamPassword));

  // psql's whole output, with the connection details it can show.
  auto r = psql(via(s().main), {"\\conninfo", "SELECT current_user", "SHOW ALL",
                                "SELECT * FROM pg_stat_ssl WHERE pid = pg_backend_pid()"});
  EXPECT_TRUE(r.ok()) << r.output;
  EXPECT_TRUE(contains(r.output, s().role)) << r.output;
  EXPECT_FALSE(contains(r.output, kUpstreamPassword));

  // A wrong upstream password is reported as an authentication failure without the password.
  auto bad = refused(via(s().badpw));
  EXPECT_EQ(bad.sqlstate, "08006") << bad.error;
  EXPECT_TRUE(contains(bad.error, "authentication")) << bad.error;
  EXPECT_FALSE(contains(bad.error, kBadUpstreamPassword));
  EXPECT_FALSE(contains(bad.error, kUpstreamPassword));

  // Nor does pgwarden write them to its log or audit file.
  const std::string log = s().proxy->log();
  EXPECT_TRUE(contains(log, "badpw")) << log;  // control: the failure was logged
  EXPECT_FALSE(contains(log, kUpstreamPassword));
  EXPECT_FALSE(contains(log, kBadUpstreamPassword));
  const std::string audit = slurp(s().proxy->dir() / "audit.jsonl");
  EXPECT_TRUE(contains(audit, "session_start")) << audit;
  EXPECT_FALSE(contains(audit, kUpstreamPassword));
  EXPECT_FALSE(contains(audit, kBadUpstreamPassword));
}

// ---------------------------------------------------------------------------------------
// Cancel

// Waits for the result of a query sent with PQsendQuery, within `timeout`.
PgResultPtr wait_result(PGconn* conn, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (PQisBusy(conn) == 1) {
    if (Clock::now() >= deadline) {
      return nullptr;
    }
    pollfd p{PQsocket(conn), POLLIN, 0};
    ::poll(&p, 1, 100);
    if (PQconsumeInput(conn) == 0) {
      break;
    }
  }
  return PgResultPtr(PQgetResult(conn));
}

TEST_F(ProxyTls, CancelThroughPgwardenAndForgedKeysAreIgnored) {
  auto conn = connect_or_throw(via(s().main));
  const std::string server_pid = query_value(conn.get(), "SELECT pg_backend_pid()");
  const auto client_pid = static_cast<std::uint32_t>(PQbackendPID(conn.get()));
  // The server's real process id (pg_terminate_backend and NOTIFY's be_pid rely on it); the
  // cancel secret is pgwarden's own.
  EXPECT_EQ(std::to_string(client_pid), server_pid);

  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT pg_sleep(30)"), 1) << PQerrorMessage(conn.get());
  auto running = [&] {
    return pg().query_value(
               "SELECT count(*) FROM pg_stat_activity WHERE pid = $1::int AND state = 'active' "
               "AND query = 'SELECT pg_sleep(30)'",
               {server_pid}) == "1";
  };
  ASSERT_TRUE(wait_until(running, 15s)) << "the query never started on the server";

  // Forged keys: the right pid with a wrong secret, and a wrong pid with a wrong secret.
  const std::array<std::byte, 4> wrong{std::byte{0xde}, std::byte{0xad}, std::byte{0xbe},
                                       std::byte{0xef}};
  for (std::uint32_t pid : {client_pid, client_pid + 1}) {
    auto forged = RawClient::dial("127.0.0.1", s().main);
    forged->write_cancel(pid, wrong);
    // As PostgreSQL: no answer, the connection is just closed.
    EXPECT_TRUE(forged->wait_closed(10s));
    EXPECT_EQ(forged->buffered(), 0u);
  }
  // A wrongly forwarded cancel takes effect in well under this; the query must still run.
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(running()) << "a forged cancel key stopped the query";
  ASSERT_EQ(PQconsumeInput(conn.get()), 1);
  EXPECT_EQ(PQisBusy(conn.get()), 1) << "the query ended after a forged cancel";

  // The real cancel, as libpq sends it (plaintext CancelRequest to the address it used).
  PGcancel* cancel = PQgetCancel(conn.get());
  ASSERT_NE(cancel, nullptr);
  std::array<char, 256> errbuf{};
  const int sent = PQcancel(cancel, errbuf.data(), static_cast<int>(errbuf.size()));
  PQfreeCancel(cancel);
  ASSERT_EQ(sent, 1) << errbuf.data();

  auto result = wait_result(conn.get(), 15s);
  ASSERT_NE(result, nullptr) << "no result after the cancel";
  EXPECT_EQ(PQresultStatus(result.get()), PGRES_FATAL_ERROR);
  const char* state = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
  EXPECT_STREQ(state, "57014") << PQresultErrorMessage(result.get());
  while (auto more = PgResultPtr(PQgetResult(conn.get()))) {
  }
  // The session survives its cancelled query.
  EXPECT_EQ(query_value(conn.get(), "SELECT 'after-cancel'"), "after-cancel");
  EXPECT_EQ(query_value(conn.get(), "SELECT pg_backend_pid()"), server_pid);
}

TEST_F(ProxyTls, RawClientBackendKeyHasTheServersPid) {
  // The BackendKeyData on the wire, next to the server's pid seen through the same session:
  // the same pid, with a cancel secret of pgwarden's own.
  TlsOutcome tls;
  auto c = tls_dial(s().main, verify_full(), &tls);
  ASSERT_TRUE(tls.ok) << tls.error;
  c->write_startup(startup("alice"));
  LoginResult login = c->login_result();
  ASSERT_TRUE(login.ready()) << (login.error ? login.error->message : "not ready");
  ASSERT_TRUE(login.backend_key.has_value());
  EXPECT_EQ(login.backend_key->secret.size(), 4u);  // protocol 3.0
  auto r = c->simple_query("SELECT pg_backend_pid()");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.rows.size(), 1u);
  EXPECT_EQ(std::to_string(login.backend_key->process_id), r.rows[0][0].value_or(""));

  // Keys of two sessions differ.
  TlsOutcome tls2;
  auto c2 = tls_dial(s().main, verify_full(), &tls2);
  ASSERT_TRUE(tls2.ok) << tls2.error;
  c2->write_startup(startup("alice"));
  LoginResult login2 = c2->login_result();
  ASSERT_TRUE(login2.ready());
  ASSERT_TRUE(login2.backend_key.has_value());
  EXPECT_FALSE(login.backend_key->process_id == login2.backend_key->process_id &&
               login.backend_key->secret == login2.backend_key->secret);
}

}  // namespace
}  // namespace pgwarden::fixture
