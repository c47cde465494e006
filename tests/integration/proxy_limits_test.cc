// Limits, signals, audit and secrets of the pgwarden proxy, against the real PostgreSQL 15
// of the shared cluster with real clients (libpq, psql) and RawClient where the test must
// choose every byte (issue 3, "Limits and signals" and "Audit and secrets"):
//  - startup_timeout closes a silent client and one that stops in the middle of SCRAM;
//  - max_connections refuses the connection past the limit with 53300, and frees the slot
//    again when a session ends;
//  - an oversized startup packet gets FATAL 08P01 (plaintext, over TLS, and from libpq);
//  - SIGHUP reloads the users file without disturbing a live session in a transaction, and
//    a broken configuration is refused while the old one stays in force;
//  - SIGTERM drains: a running query finishes and then gets 57P01, an idle session gets
//    57P01 at once, shutdown_grace ends what is left, and the process exits 0;
//  - audit events carry the SPEC section 7 fields and the audit file is reopened on SIGHUP;
//  - no password or key used in this file appears in any pgwarden log, audit file or the
//    PostgreSQL log (the last test; it exercises failures of its own first).
//
// Every pgwarden process of this file is wrapped in Proxy, which archives its log and audit
// files before the process directory is removed, so the secrets test can scan them all when
// the whole binary runs. Every password and key is registered when it is made.
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
#include <nlohmann/json.hpp>

#include "config/users_file.h"
#include "crypto/random.h"
#include "crypto/scram.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/raw_client.h"
#include "fixture/test_util.h"
#include "wire/message_type.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// ---------------------------------------------------------------------------- secrets

struct RegisteredSecret {
  std::string label;  // printed on a leak instead of the value
  std::string value;
};

std::vector<RegisteredSecret>& secrets() {
  static std::vector<RegisteredSecret> all;
  return all;
}

void register_secret(const std::string& label, const std::string& value) {
  if (!value.empty()) {
    secrets().push_back({label, value});
  }
}

// A distinctive random string (base62), registered as a secret under `label`.
std::string make_secret(const std::string& label) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::vector<std::byte> raw(28);
  if (!crypto::random_bytes(raw)) {
    throw FixtureError("random_bytes failed");
  }
  std::string out = "Lq";
  for (auto b : raw) {
    out.push_back(kAlphabet[std::to_integer<unsigned>(b) % kAlphabet.size()]);
  }
  register_secret(label, out);
  return out;
}

// Every base64 line of a PEM private key is a secret.
void register_key_file(const std::string& label, const fs::path& key) {
  std::ifstream f(key);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (!line.empty() && !line.starts_with("-----") && line.size() >= 16) {
      register_secret(label + " line " + std::to_string(++n), line);
    }
  }
}

// One users-file line; the verifier's StoredKey and ServerKey are registered as secrets
// (the ServerKey lets whoever holds it impersonate the server to the client).
std::string registered_users_line(const std::string& name, const std::string& password) {
  auto verifier = crypto::make_scram_verifier(password);
  if (!verifier) {
    throw FixtureError("make_scram_verifier failed");
  }
  const std::string text = verifier->to_string();
  // SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>
  const auto keys = text.substr(text.rfind('$') + 1);
  const auto colon = keys.find(':');
  register_secret(name + " StoredKey", keys.substr(0, colon));
  register_secret(name + " ServerKey", keys.substr(colon + 1));
  return config::quote_users_file_field(name) + " " + config::quote_users_file_field(text) + "\n";
}

// ---------------------------------------------------------------------------- archive

struct ArchivedText {
  std::string origin;
  std::string text;
};

std::vector<ArchivedText>& archived() {
  static std::vector<ArchivedText> all;
  return all;
}

// A pgwarden process whose log and audit files (rotated ones too) are archived for the
// secrets test when the object goes away. The process is stopped first, so its last lines
// are archived as well.
class Proxy {
 public:
  Proxy(PgwardenOptions options, std::string label)
      : label_(std::move(label)), process_(PgwardenProcess::start(std::move(options))) {}
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;
  ~Proxy() {
    try {
      if (process_->running()) {
        process_->signal(SIGTERM);
        process_->wait_exit(15s);
      }
      archive();
    } catch (...) {
      // Never throw from a destructor; PgwardenProcess still stops the child.
    }
  }

  PgwardenProcess* operator->() { return process_.get(); }
  PgwardenProcess& process() { return *process_; }

  void archive() {
    if (archived_) {
      return;
    }
    archived_ = true;
    for (const auto& entry : fs::directory_iterator(process_->dir())) {
      const std::string name = entry.path().filename().string();
      if (name == PgwardenProcess::kLogName || name.find(".jsonl") != std::string::npos) {
        archived().push_back({label_ + "/" + name, slurp(entry.path())});
      }
    }
  }

 private:
  std::string label_;
  std::unique_ptr<PgwardenProcess> process_;
  bool archived_ = false;
};

// ---------------------------------------------------------------------------- config

struct Upstream {
  std::string role;
  std::string password;
};

Upstream make_upstream(PgCluster& pg, const std::string& prefix) {
  Upstream u{unique_name(prefix), make_secret(prefix + " upstream password")};
  pg.create_role(RoleSpec{u.role, AuthMethod::kScram, u.password, false, ""});
  return u;
}

std::string server_toml(const std::string& shutdown_grace, const std::string& log_level = "debug") {
  return "[server]\nworkers = 2\nshutdown_grace = \"" + shutdown_grace + "\"\nlog_level = \"" +
         log_level + "\"\n\n";
}

std::string audit_toml() {
  return "[audit]\npath = \"@DIR@/audit.jsonl\"\n\n";
}

// A TLS + SCRAM listener serving the cluster's own certificate (CN localhost).
std::string scram_listener_toml(PgCluster& pg, const std::string& name, std::uint16_t port,
                                const std::string& extra = "") {
  return "[[listener]]\nname = \"" + name + "\"\nlisten = \"127.0.0.1:" + std::to_string(port) +
         "\"\nbackend = \"app\"\ntls = \"require\"\ntls_cert = \"" +
         pg.server_cert().cert.string() + "\"\ntls_key = \"" + pg.server_cert().key.string() +
         "\"\nauth = [\"scram\"]\nusers_file = \"users.txt\"\nauth_failure_limit = 1000\n" + extra +
         "\n";
}

// Static credentials; the password comes from the environment, so the configuration text
// never holds it.
std::string backend_toml(PgCluster& pg, const Upstream& up) {
  return "[backend.app]\naddress = \"localhost:" + std::to_string(pg.port()) +
         "\"\ntls = \"verify-full\"\ntls_ca = \"" + pg.ca_cert().string() +
         "\"\ncredentials = \"static\"\nuser = \"" + up.role +
         "\"\npassword = \"${UPSTREAM_PASSWORD}\"\n";
}

PgwardenOptions proxy_options(const std::string& config, const std::string& users,
                              const Upstream& up, std::vector<std::uint16_t> ports) {
  PgwardenOptions o;
  o.config = config;
  o.files.push_back(PgwardenFile{"users.txt", users});
  o.env.emplace_back("UPSTREAM_PASSWORD", up.password);
  o.ports = std::move(ports);
  return o;
}

// libpq parameters for a pgwarden listener: verify-full against the cluster CA on
// 127.0.0.1 (an IP SAN of the certificate), so libpq never tries ::1 first.
ConnInfo client_info(PgCluster& pg, std::uint16_t port, const std::string& user,
                     const std::string& password) {
  ConnInfo ci = pg.conninfo(user, password, HostForm::kIpv4);
  ci.set("port", std::to_string(port));
  return ci;
}

TlsClientOptions verify_localhost(PgCluster& pg) {
  TlsClientOptions o;
  o.ca_file = pg.ca_cert();
  o.expected_host = "localhost";
  o.sni = "localhost";
  return o;
}

// SSLRequest, 'S', verified handshake.
std::unique_ptr<RawClient> raw_tls(PgCluster& pg, std::uint16_t port) {
  auto c = RawClient::dial("127.0.0.1", port);
  c->write_ssl_request();
  const auto answer = c->read_byte();
  if (answer != 'S') {
    throw FixtureError("SSLRequest was not answered with 'S'");
  }
  auto outcome = c->start_tls(verify_localhost(pg));
  if (!outcome) {
    throw FixtureError("TLS handshake with pgwarden failed: " + outcome.error);
  }
  return c;
}

std::string be32(std::uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

// A StartupMessage (3.0) whose whole packet is exactly `total` bytes: user, database and an
// application_name padded to fit.
std::string startup_of_size(const std::string& user, std::size_t total) {
  std::string params = std::string("user") + '\0' + user + '\0' + "database" + '\0' + "postgres" +
                       '\0' + "application_name" + '\0';
  const std::size_t fixed = 4 + 4 + params.size() + 1 + 1;  // length, version, NULs
  if (total < fixed) {
    throw FixtureError("startup_of_size: too small");
  }
  params += std::string(total - fixed, 'a');
  params.push_back('\0');
  params.push_back('\0');
  return be32(static_cast<std::uint32_t>(total)) + be32(wire::kProtocol30) + params;
}

// ---------------------------------------------------------------------------- libpq

struct Notice {
  std::string severity;
  std::string sqlstate;
  std::string message;
};

// A libpq connection whose notices, and ErrorResponses that arrive while it is idle (libpq
// hands those to the notice receiver), are recorded. Declared so the connection goes first.
struct Watched {
  std::vector<Notice> notices;
  PgConnPtr conn;

  bool got(const std::string& severity, const std::string& sqlstate) const {
    return std::any_of(notices.begin(), notices.end(), [&](const Notice& n) {
      return n.severity == severity && n.sqlstate == sqlstate;
    });
  }
};

std::string field(const PGresult* r, int code) {
  const char* v = PQresultErrorField(r, code);
  return v ? v : "";
}

std::unique_ptr<Watched> connect_watched(const ConnInfo& info) {
  auto w = std::make_unique<Watched>();
  w->conn = connect_or_throw(info);
  PQsetNoticeReceiver(
      w->conn.get(),
      [](void* arg, const PGresult* r) {
        auto* out = static_cast<std::vector<Notice>*>(arg);
        std::string severity = field(r, PG_DIAG_SEVERITY_NONLOCALIZED);
        if (severity.empty()) {
          severity = field(r, PG_DIAG_SEVERITY);
        }
        out->push_back({severity, field(r, PG_DIAG_SQLSTATE), field(r, PG_DIAG_MESSAGE_PRIMARY)});
      },
      &w->notices);
  return w;
}

bool wait_readable(PGconn* c, std::chrono::milliseconds timeout) {
  const int fd = PQsocket(c);
  if (fd < 0) {
    return false;
  }
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// Reads what the server sends until the connection ends (true) or `timeout` passes (false).
// An ErrorResponse that arrives while no query runs reaches the notice receiver.
bool wait_connection_end(PGconn* c, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (PQstatus(c) == CONNECTION_BAD) {
      return true;
    }
    if (wait_readable(c, 100ms)) {
      const int ok = PQconsumeInput(c);
      PQisBusy(c);  // parses what arrived
      if (!ok) {
        return true;
      }
    }
  }
  return PQstatus(c) == CONNECTION_BAD;
}

// Waits (bounded) until the query sent with PQsendQuery has delivered every result.
// nullopt on timeout; a dropped connection ends the list.
std::optional<std::vector<PgResultPtr>> collect_results(PGconn* c,
                                                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::vector<PgResultPtr> out;
  for (;;) {
    while (PQisBusy(c)) {
      if (Clock::now() >= deadline) {
        return std::nullopt;
      }
      if (wait_readable(c, 100ms) && !PQconsumeInput(c)) {
        break;
      }
      if (PQstatus(c) == CONNECTION_BAD) {
        break;
      }
    }
    PGresult* r = PQgetResult(c);
    if (r == nullptr) {
      return out;
    }
    out.emplace_back(r);
  }
}

// Waits until the cluster runs a statement whose text contains `marker` (state active).
bool wait_query_active(PgCluster& pg, const std::string& marker,
                       std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    const std::string n = pg.query_value(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
        "AND pid <> pg_backend_pid()",
        {"%" + marker + "%"});
    if (n != "0") {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// Waits until no statement whose text contains `marker` is active on the cluster.
bool wait_query_gone(PgCluster& pg, const std::string& marker, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const std::string n = pg.query_value(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 "
        "AND pid <> pg_backend_pid()",
        {"%" + marker + "%"});
    if (n == "0") {
      return true;
    }
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(50ms);
  }
}

void terminate_marked(PgCluster& pg, const std::string& marker) {
  pg.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE $1 "
      "AND pid <> pg_backend_pid()",
      {"%" + marker + "%"});
}

// A string field of an audit event, "" when it is null or absent.
std::string str(const json& e, const std::string& key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<json> read_audit(const fs::path& path) {
  std::vector<json> out;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty()) {
      out.push_back(json::parse(line));
    }
  }
  return out;
}

// Polls the audit file until `pred` holds for some event.
std::optional<json> wait_audit(const fs::path& path, const std::function<bool(const json&)>& pred,
                               std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    try {
      for (const auto& e : read_audit(path)) {
        if (pred(e)) {
          return e;
        }
      }
    } catch (const json::exception&) {
      // A line being written right now; look again.
    }
    if (Clock::now() >= deadline) {
      return std::nullopt;
    }
    std::this_thread::sleep_for(50ms);
  }
}

std::uint16_t local_port(PGconn* c) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(PQsocket(c), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return 0;
  }
  if (addr.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  }
  return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
}

// ============================================================================================
// One pgwarden for the tests that only need listeners with different limits.

class ProxyLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    PgCluster& pg = shared_cluster();
    register_key_file("listener TLS key", pg.server_cert().key);
    upstream_ = make_upstream(pg, "lim_up");
    alice_ = make_secret("alice password");
    main_port_ = pick_free_port();
    short_port_ = pick_free_port();
    limited_port_ = pick_free_port();
    const std::string config =
        server_toml("5s") + audit_toml() + scram_listener_toml(pg, "main", main_port_) +
        scram_listener_toml(pg, "short", short_port_, "startup_timeout = \"1s\"\n") +
        scram_listener_toml(pg, "limited", limited_port_, "max_connections = 2\n") +
        backend_toml(pg, upstream_);
    proxy_ = new Proxy(proxy_options(config, registered_users_line("alice", alice_), upstream_,
                                     {main_port_, short_port_, limited_port_}),
                       "limits");
  }
  static void TearDownTestSuite() {
    delete proxy_;
    proxy_ = nullptr;
  }
  void TearDown() override { ASSERT_TRUE(pw().running()) << pw().log(); }

  PgCluster& pg() { return shared_cluster(); }
  PgwardenProcess& pw() { return proxy_->process(); }
  ConnInfo alice_on(std::uint16_t port) { return client_info(pg(), port, "alice", alice_); }

  static inline Upstream upstream_;
  static inline std::string alice_;
  static inline std::uint16_t main_port_ = 0;
  static inline std::uint16_t short_port_ = 0;
  static inline std::uint16_t limited_port_ = 0;
  static inline Proxy* proxy_ = nullptr;
};

TEST_F(ProxyLimits, SilentClientIsClosedAfterStartupTimeout) {
  const auto from = pw().log_size();
  auto c = RawClient::dial("127.0.0.1", short_port_);
  // Nothing is sent: only startup_timeout (1s) can end this connection.
  EXPECT_TRUE(c->wait_closed(10s)) << "a silent client was not closed";
  EXPECT_TRUE(pw().wait_for_log("startup_timeout (1s) expired", 5s, from)) << pw().log();
}

TEST_F(ProxyLimits, ClientThatStopsMidScramIsClosedAfterStartupTimeout) {
  const auto from = pw().log_size();
  // Stops right after AuthenticationSASL.
  auto a = raw_tls(pg(), short_port_);
  a->write_startup({{"user", "alice"}, {"database", "postgres"}});
  auto login = a->login_result();
  ASSERT_EQ(login.status, LoginStatus::kAuthRequested);
  EXPECT_EQ(login.auth_request, static_cast<std::int32_t>(wire::AuthType::SASL));

  // Stops after its client-first-message, once the server-first-message has arrived.
  auto b = raw_tls(pg(), short_port_);
  b->write_startup({{"user", "alice"}, {"database", "postgres"}});
  ASSERT_EQ(b->login_result().status, LoginStatus::kAuthRequested);
  const std::string client_first = "n,,n=,r=StoppedMidScramNonce0123";
  std::string body = std::string("SCRAM-SHA-256") + '\0' +
                     be32(static_cast<std::uint32_t>(client_first.size())) + client_first;
  b->write_message('p', body);
  auto server_first = b->read_or_throw();
  ASSERT_EQ(server_first.type, 'R');

  EXPECT_TRUE(a->wait_closed(10s)) << "a client silent after AuthenticationSASL stayed open";
  EXPECT_TRUE(b->wait_closed(10s)) << "a client silent after its client-first stayed open";
  // Two sessions ended by the timeout (the log names each).
  ASSERT_TRUE(pw().wait_for_log("startup_timeout (1s) expired", 5s, from));
  const std::string log = pw().log().substr(from);
  std::size_t count = 0;
  for (auto at = log.find("startup_timeout (1s) expired"); at != std::string::npos;
       at = log.find("startup_timeout (1s) expired", at + 1)) {
    ++count;
  }
  EXPECT_GE(count, 2u) << log;
}

TEST_F(ProxyLimits, ConnectionPastMaxConnectionsGets53300) {
  // The fixture's readiness probe held a slot for a moment after start: allow for it.
  auto connect_slot = [&] {
    ConnectOutcome out;
    const auto deadline = Clock::now() + 10s;
    do {
      out = try_connect(alice_on(limited_port_));
      if (out.ok() || out.sqlstate != "53300") {
        break;
      }
      std::this_thread::sleep_for(100ms);
    } while (Clock::now() < deadline);
    if (!out.ok()) {
      throw FixtureError("connect to the limited listener: " + out.error);
    }
    return std::move(out.conn);
  };
  auto c1 = connect_slot();
  auto c2 = connect_slot();
  ASSERT_EQ(query_value(c1.get(), "SELECT 1"), "1");
  ASSERT_EQ(query_value(c2.get(), "SELECT 2"), "2");

  auto third = try_connect(alice_on(limited_port_));
  ASSERT_FALSE(third.ok()) << "a third connection was accepted with max_connections = 2";
  EXPECT_EQ(third.sqlstate, "53300") << third.error;
  EXPECT_NE(third.error.find("too many clients"), std::string::npos) << third.error;

  // Another listener of the same process is not affected by this one's limit.
  auto other = try_connect(alice_on(main_port_));
  EXPECT_TRUE(other.ok()) << other.error;

  // When one session ends, its slot is free again (the count drops once pgwarden has seen
  // the client go).
  c1.reset();
  auto again = connect_slot();
  EXPECT_EQ(query_value(again.get(), "SELECT 'again'"), "again");
  EXPECT_EQ(query_value(c2.get(), "SELECT 'still here'"), "still here");
}

TEST_F(ProxyLimits, OversizedStartupPacketGets08P01) {
  // Plaintext: a length word above 10,000 is refused as soon as it is read.
  {
    auto c = RawClient::dial("127.0.0.1", main_port_);
    c->write_raw(be32(10'001) + be32(wire::kProtocol30) + std::string(8, '\0'));
    auto e = c->read_error();
    ASSERT_TRUE(e.has_value()) << "no ErrorResponse for a 10,001-byte startup packet";
    EXPECT_EQ(e->severity, "FATAL");
    EXPECT_EQ(e->sqlstate, "08P01");
    EXPECT_NE(e->message.find("exceeds the size limit"), std::string::npos) << e->message;
    EXPECT_TRUE(c->wait_closed(10s));
  }
  // Over TLS: a real StartupMessage one byte over the limit, with a huge parameter.
  {
    auto c = raw_tls(pg(), main_port_);
    c->write_raw(startup_of_size("alice", 10'001));
    auto e = c->read_error();
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->severity, "FATAL");
    EXPECT_EQ(e->sqlstate, "08P01");
    EXPECT_TRUE(c->wait_closed(10s));
  }
  // The boundary: exactly 10,000 bytes is a valid startup packet (SCRAM is asked next).
  {
    auto c = raw_tls(pg(), main_port_);
    c->write_raw(startup_of_size("alice", 10'000));
    auto login = c->login_result();
    EXPECT_EQ(login.status, LoginStatus::kAuthRequested)
        << (login.error ? login.error->sqlstate + " " + login.error->message : "");
  }
  // A real client: libpq sends whatever application_name it is given.
  {
    ConnInfo ci = alice_on(main_port_);
    ci.set("application_name", std::string(11'000, 'x'));
    auto out = try_connect(ci);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.sqlstate, "08P01") << out.error;
  }
  // None of this touched a working login.
  auto ok = connect_or_throw(alice_on(main_port_));
  EXPECT_EQ(query_value(ok.get(), "SELECT 'fine'"), "fine");
}

// ============================================================================================
// Tests with a pgwarden of their own (signals, audit rotation).

class ProxySignals : public ::testing::Test {
 protected:
  PgCluster& pg() { return shared_cluster(); }
  PgwardenProcess& pw() { return proxy_->process(); }

  void start(const std::string& shutdown_grace, const std::string& users, const std::string& label,
             bool with_audit = false) {
    upstream_ = make_upstream(pg(), "sig_up");
    port_ = pick_free_port();
    config_ = server_toml(shutdown_grace) + (with_audit ? audit_toml() : "") +
              scram_listener_toml(pg(), "main", port_) + backend_toml(pg(), upstream_);
    proxy_ = std::make_unique<Proxy>(proxy_options(config_, users, upstream_, {port_}), label);
  }

  ConnInfo user_info(const std::string& user, const std::string& password) {
    return client_info(pg(), port_, user, password);
  }

  // Sends SIGHUP and waits for the reload's verdict in the log.
  bool reload_and_wait(const std::string& verdict) {
    const auto from = pw().log_size();
    pw().signal(SIGHUP);
    return pw().wait_for_log(verdict, 10s, from);
  }

  Upstream upstream_;
  std::uint16_t port_ = 0;
  std::string config_;
  std::unique_ptr<Proxy> proxy_;
};

TEST_F(ProxySignals, SighupAddsAUserWhileALiveSessionKeepsRunning) {
  const std::string alice = make_secret("reload alice password");
  const std::string bob = make_secret("reload bob password");
  const std::string alice_line = registered_users_line("alice", alice);
  start("5s", alice_line, "reload-user");

  // A live session in a transaction, with session state that a reconnect would lose.
  auto live = connect_or_throw(user_info("alice", alice));
  const std::string backend_pid = query_value(live.get(), "SELECT pg_backend_pid()");
  query_rows(live.get(), "BEGIN");
  query_rows(live.get(), "CREATE TEMP TABLE reload_t(v int)");
  query_rows(live.get(), "INSERT INTO reload_t VALUES (1)");

  auto before = try_connect(user_info("bob", bob));
  ASSERT_FALSE(before.ok()) << "bob logged in before he was added";
  EXPECT_EQ(before.sqlstate, "28P01") << before.error;

  pw().write_file("users.txt", alice_line + registered_users_line("bob", bob));
  ASSERT_TRUE(reload_and_wait("configuration reloaded")) << pw().log();

  auto bob_conn = try_connect(user_info("bob", bob));
  ASSERT_TRUE(bob_conn.ok()) << bob_conn.error;
  EXPECT_EQ(query_value(bob_conn.conn.get(), "SELECT current_user"), upstream_.role);

  // The live session went through the reload untouched: same backend, same transaction,
  // same temporary table.
  EXPECT_EQ(PQtransactionStatus(live.get()), PQTRANS_INTRANS);
  query_rows(live.get(), "INSERT INTO reload_t VALUES (2)");
  EXPECT_EQ(query_value(live.get(), "SELECT sum(v) FROM reload_t"), "3");
  EXPECT_EQ(query_value(live.get(), "SELECT pg_backend_pid()"), backend_pid);
  query_rows(live.get(), "COMMIT");
  EXPECT_EQ(query_value(live.get(), "SELECT count(*) FROM reload_t"), "2");

  // alice still logs in under the new generation.
  auto alice_again = try_connect(user_info("alice", alice));
  EXPECT_TRUE(alice_again.ok()) << alice_again.error;
}

TEST_F(ProxySignals, SighupWithABrokenConfigKeepsTheOldOne) {
  const std::string alice = make_secret("broken alice password");
  const std::string bob = make_secret("broken bob password");
  const std::string alice_line = registered_users_line("alice", alice);
  start("5s", alice_line, "reload-broken");

  auto live = connect_or_throw(user_info("alice", alice));
  const std::string backend_pid = query_value(live.get(), "SELECT pg_backend_pid()");
  query_rows(live.get(), "BEGIN");
  query_rows(live.get(), "CREATE TEMP TABLE broken_t AS SELECT 7 AS v");

  // The users file gains bob, but the configuration is broken: the reload must be refused
  // as a whole, so the users file read at start stays in force and bob is still unknown.
  pw().write_file("users.txt", alice_line + registered_users_line("bob", bob));
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"TOML syntax error", config_ + "\n[[listener]\nname = \"x\"\n"},
      {"unknown key", config_ + "\nbogus_key = 1\n"},
      {"missing backend", server_toml("5s") + scram_listener_toml(pg(), "main", port_)},
  };
  for (const auto& [what, text] : broken) {
    SCOPED_TRACE(what);
    pw().rewrite_config(text);
    ASSERT_TRUE(reload_and_wait("reload refused")) << pw().log();
    ASSERT_TRUE(pw().running()) << pw().log();

    auto bob_conn = try_connect(user_info("bob", bob));
    EXPECT_FALSE(bob_conn.ok()) << "the refused configuration was applied";
    EXPECT_EQ(bob_conn.sqlstate, "28P01") << bob_conn.error;
    auto alice_conn = try_connect(user_info("alice", alice));
    EXPECT_TRUE(alice_conn.ok()) << alice_conn.error;
    EXPECT_EQ(query_value(live.get(), "SELECT v FROM broken_t"), "7");
  }
  EXPECT_EQ(query_value(live.get(), "SELECT pg_backend_pid()"), backend_pid);
  EXPECT_EQ(PQtransactionStatus(live.get()), PQTRANS_INTRANS);
  query_rows(live.get(), "COMMIT");

  // After the refusals the process still reloads a good configuration.
  pw().rewrite_config(config_);
  ASSERT_TRUE(reload_and_wait("configuration reloaded")) << pw().log();
  auto bob_conn = try_connect(user_info("bob", bob));
  EXPECT_TRUE(bob_conn.ok()) << bob_conn.error;
}

TEST_F(ProxySignals, SigtermLetsARunningQueryFinishThenSends57P01) {
  const std::string alice = make_secret("drain alice password");
  start("10s", registered_users_line("alice", alice), "drain");

  auto busy = connect_watched(user_info("alice", alice));
  auto idle = connect_watched(user_info("alice", alice));
  const std::string marker = unique_name("drain_marker");
  ASSERT_EQ(PQsendQuery(busy->conn.get(),
                        ("SELECT pg_sleep(3) AS slept, '" + marker + "' AS marker").c_str()),
            1);
  ASSERT_TRUE(wait_query_active(pg(), marker, 10s)) << "the query never started";

  pw().signal(SIGTERM);

  // The idle session is ended at once with FATAL 57P01 ...
  ASSERT_TRUE(wait_connection_end(idle->conn.get(), 10s)) << "the idle session was not ended";
  EXPECT_TRUE(idle->got("FATAL", "57P01")) << PQerrorMessage(idle->conn.get());
  // ... while the busy one is still running its query (3 s of it).
  PQconsumeInput(busy->conn.get());
  EXPECT_TRUE(PQisBusy(busy->conn.get())) << "the running query did not get to run";

  // New connections are no longer accepted.
  auto late = try_connect(user_info("alice", alice), 5s);
  EXPECT_FALSE(late.ok()) << "a connection was accepted after SIGTERM";

  // The query finishes and its result reaches the client ...
  auto results = collect_results(busy->conn.get(), 15s);
  ASSERT_TRUE(results.has_value()) << "the running query's result never came";
  ASSERT_FALSE(results->empty());
  const PGresult* r = (*results)[0].get();
  ASSERT_EQ(PQresultStatus(r), PGRES_TUPLES_OK) << PQresultErrorMessage(r);
  ASSERT_EQ(PQntuples(r), 1);
  EXPECT_EQ(std::string(PQgetvalue(r, 0, 1)), marker);
  // ... and then the session ends with FATAL 57P01.
  ASSERT_TRUE(wait_connection_end(busy->conn.get(), 10s)) << "the drained session stayed open";
  bool saw_57p01 = busy->got("FATAL", "57P01");
  if (!saw_57p01) {
    // Or the next query shows it.
    auto next = run_query(busy->conn.get(), "SELECT 1");
    saw_57p01 = next.sqlstate == "57P01" || next.error.find("57P01") != std::string::npos;
  }
  EXPECT_TRUE(saw_57p01) << PQerrorMessage(busy->conn.get());

  EXPECT_EQ(pw().wait_exit(20s), std::optional<int>(0)) << pw().log();
  EXPECT_NE(pw().log().find("shutting down"), std::string::npos);
}

TEST_F(ProxySignals, ShutdownGraceExpiryEndsALongQueryWith57P01) {
  const std::string alice = make_secret("grace alice password");
  start("1s", registered_users_line("alice", alice), "grace");

  auto busy = connect_watched(user_info("alice", alice));
  const std::string marker = unique_name("grace_marker");
  ASSERT_EQ(PQsendQuery(busy->conn.get(),
                        ("SELECT pg_sleep(60) AS slept, '" + marker + "' AS marker").c_str()),
            1);
  ASSERT_TRUE(wait_query_active(pg(), marker, 10s));

  pw().signal(SIGTERM);
  auto results = collect_results(busy->conn.get(), 20s);
  // The statement must not go on upstream after the client was told it was terminated (it
  // could still commit): pgwarden cancels it there.
  const bool upstream_stopped = wait_query_gone(pg(), marker, 10s);
  terminate_marked(pg(), marker);  // leave the shared cluster idle whatever happened
  EXPECT_TRUE(upstream_stopped) << "the query kept running upstream after FATAL 57P01";
  ASSERT_TRUE(results.has_value()) << "the query was not ended by shutdown_grace";
  ASSERT_FALSE(results->empty());
  const PGresult* r = (*results)[0].get();
  EXPECT_EQ(PQresultStatus(r), PGRES_FATAL_ERROR) << "the 60 s query was not interrupted";
  EXPECT_EQ(field(r, PG_DIAG_SQLSTATE), "57P01") << PQresultErrorMessage(r);
  EXPECT_EQ(field(r, PG_DIAG_SEVERITY_NONLOCALIZED), "FATAL");

  EXPECT_EQ(pw().wait_exit(20s), std::optional<int>(0)) << pw().log();
  EXPECT_NE(pw().log().find("shutdown_grace expired"), std::string::npos) << pw().log();
}

// ---------------------------------------------------------------------------- audit

// `text` against a shape: 'd' a decimal digit, 'x' a lower-case hex digit, anything else
// itself.
bool matches(const std::string& text, const std::string& shape) {
  if (text.size() != shape.size() || text.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool digit = c >= '0' && c <= '9';
    if (shape[i] == 'd'   ? !digit
        : shape[i] == 'x' ? !(digit || (c >= 'a' && c <= 'f'))
                          : c != shape[i]) {
      return false;
    }
  }
  return true;
}

void expect_common_fields(const json& e, const std::string& event) {
  SCOPED_TRACE(event + ": " + e.dump());
  ASSERT_TRUE(e.is_object());
  for (const char* key : {"ts", "event", "session", "listener", "client", "tls", "identity",
                          "database", "backend", "backend_user"}) {
    EXPECT_TRUE(e.contains(key)) << "missing field " << key;
  }
  EXPECT_EQ(str(e, "event"), event);
  EXPECT_TRUE(matches(str(e, "ts"), "dddd-dd-ddTdd:dd:dd.ddddddZ")) << str(e, "ts");
  EXPECT_TRUE(matches(str(e, "session"), "xxxxxxxxxxxxxxxx")) << str(e, "session");
  EXPECT_EQ(str(e, "listener"), "main");
  const std::string client = str(e, "client");
  EXPECT_TRUE(client.starts_with("127.0.0.1:") &&
              matches(client.substr(10), std::string(client.size() - 10, 'd')))
      << client;
  EXPECT_EQ(str(e, "backend"), "app");
}

void expect_tls_object(const json& tls) {
  ASSERT_TRUE(tls.is_object()) << tls.dump();
  EXPECT_TRUE(str(tls, "version").starts_with("TLSv1.")) << tls.dump();
  EXPECT_FALSE(str(tls, "cipher").empty()) << tls.dump();
  EXPECT_TRUE(tls.contains("sni"));
  EXPECT_TRUE(tls.contains("client_subject"));
}

TEST_F(ProxySignals, AuditEventsCarryTheSpecFieldsAndTheFileIsReopenedOnSighup) {
  const std::string alice = make_secret("audit alice password");
  const std::string wrong = make_secret("audit wrong password");
  start("5s", registered_users_line("alice", alice), "audit", /*with_audit=*/true);
  const fs::path audit = pw().dir() / "audit.jsonl";

  // auth_failure: a wrong password over TLS.
  auto bad = try_connect(user_info("alice", wrong));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.sqlstate, "28P01") << bad.error;
  // session_denied: plaintext on a TLS-required listener.
  auto plain = try_connect(user_info("alice", alice).set("sslmode", "disable"));
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.sqlstate, "28000") << plain.error;
  // session_start and session_end: three statements, then a clean exit.
  std::string client_text;
  {
    // host names the certificate (and is sent as SNI); hostaddr keeps it on 127.0.0.1.
    auto conn = connect_or_throw(
        user_info("alice", alice).set("host", "localhost").set("hostaddr", "127.0.0.1"));
    client_text = "127.0.0.1:" + std::to_string(local_port(conn.get()));
    query_rows(conn.get(), "SELECT 1");
    query_rows(conn.get(), "SELECT 2");
    query_rows(conn.get(), "SELECT 3");
  }

  auto end = wait_audit(audit, [](const json& e) { return str(e, "event") == "session_end"; });
  ASSERT_TRUE(end.has_value()) << slurp(audit);
  auto start_ev = wait_audit(audit, [&](const json& e) {
    return str(e, "event") == "session_start" && str(e, "session") == str(*end, "session");
  });
  ASSERT_TRUE(start_ev.has_value()) << "no session_start for the ended session\n" << slurp(audit);
  auto failure = wait_audit(audit, [](const json& e) { return str(e, "event") == "auth_failure"; });
  ASSERT_TRUE(failure.has_value()) << slurp(audit);
  auto denied =
      wait_audit(audit, [](const json& e) { return str(e, "event") == "session_denied"; });
  ASSERT_TRUE(denied.has_value()) << slurp(audit);

  for (const auto& e : {*start_ev, *end}) {
    expect_common_fields(e, str(e, "event"));
    expect_tls_object(e["tls"]);
    EXPECT_EQ(str(e, "client"), client_text);
    ASSERT_TRUE(e["identity"].is_object()) << e.dump();
    EXPECT_EQ(str(e["identity"], "name"), "alice");
    EXPECT_EQ(str(e["identity"], "method"), "scram");
    EXPECT_TRUE(e["identity"]["groups"].is_array());
    EXPECT_EQ(str(e, "database"), "postgres");
    EXPECT_EQ(str(e, "backend_user"), upstream_.role);
  }
  EXPECT_EQ(str((*start_ev)["tls"], "sni"), "localhost");
  EXPECT_EQ(str(*start_ev, "upstream_auth"), "SCRAM-SHA-256-PLUS");
  ASSERT_TRUE((*end)["duration_us"].is_number_integer());
  EXPECT_GT((*end)["duration_us"].get<std::int64_t>(), 0);
  EXPECT_GT((*end)["bytes_in"].get<std::int64_t>(), 0);
  EXPECT_GT((*end)["bytes_out"].get<std::int64_t>(), 0);
  EXPECT_EQ((*end)["statements"].get<std::int64_t>(), 3);
  EXPECT_FALSE(str(*end, "reason").empty());

  expect_common_fields(*failure, "auth_failure");
  expect_tls_object((*failure)["tls"]);
  EXPECT_TRUE((*failure)["identity"].is_null()) << "an identity before authentication succeeded";
  EXPECT_EQ(str(*failure, "user"), "alice");
  EXPECT_EQ(str(*failure, "method"), "scram");
  EXPECT_EQ(str(*failure, "database"), "postgres");
  EXPECT_FALSE(str(*failure, "reason").empty());

  expect_common_fields(*denied, "session_denied");
  EXPECT_TRUE((*denied)["tls"].is_null()) << "a plaintext session with TLS facts";
  EXPECT_EQ(str(*denied, "sqlstate"), "28000");
  EXPECT_NE(str(*denied, "reason").find("TLS required"), std::string::npos);

  // Rotation: move the file away, SIGHUP, and the next events go to a new file.
  const fs::path rotated = pw().dir() / "audit.jsonl.1";
  fs::rename(audit, rotated);
  ASSERT_TRUE(reload_and_wait("configuration reloaded")) << pw().log();
  ASSERT_TRUE(fs::exists(audit)) << "the audit file was not reopened";
  std::string new_client;
  {
    auto conn = connect_or_throw(user_info("alice", alice));
    new_client = "127.0.0.1:" + std::to_string(local_port(conn.get()));
    query_rows(conn.get(), "SELECT 'after rotation'");
  }
  auto new_end = wait_audit(audit, [&](const json& e) {
    return str(e, "event") == "session_end" && str(e, "client") == new_client;
  });
  ASSERT_TRUE(new_end.has_value()) << slurp(audit);
  EXPECT_EQ((*new_end)["statements"].get<std::int64_t>(), 1);
  const std::string old_text = slurp(rotated);
  EXPECT_EQ(old_text.find(new_client), std::string::npos) << "new events went to the old file";
  EXPECT_NE(old_text.find(str(*end, "session")), std::string::npos);
  EXPECT_EQ(slurp(audit).find(str(*end, "session")), std::string::npos);
  for (const auto& e : read_audit(audit)) {
    expect_common_fields(e, str(e, "event"));
  }
}

// ============================================================================================
// Last: no secret of this file in any log. It runs a scenario of its own first (wrong and
// right passwords from libpq and psql, an unknown user, a cancel, reloads of good and broken
// configurations whose broken lines hold the upstream password, a drain), so the scan is
// meaningful even when it runs alone; in a whole-binary run it also scans every earlier
// pgwarden process of this file.

TEST(ProxySecrets, NoPasswordOrKeyAppearsInAnyLogOrAuditFile) {
  PgCluster& pg = shared_cluster();
  register_key_file("listener TLS key", pg.server_cert().key);
  const Upstream up = make_upstream(pg, "sec_up");
  const std::string alice = make_secret("secrets alice password");
  const std::string wrong = make_secret("secrets wrong password");
  const std::string ghost = make_secret("secrets unknown-user password");
  const std::uint16_t port = pick_free_port();
  const std::string config = server_toml("5s", "trace") + audit_toml() +
                             scram_listener_toml(pg, "main", port) + backend_toml(pg, up);
  {
    Proxy proxy(proxy_options(config, registered_users_line("alice", alice), up, {port}),
                "secrets");
    auto info = [&](const std::string& user, const std::string& password) {
      return client_info(pg, port, user, password);
    };

    // Failures first.
    for (int i = 0; i < 2; ++i) {
      auto bad = try_connect(info("alice", wrong));
      EXPECT_EQ(bad.sqlstate, "28P01") << bad.error;
    }
    auto unknown = try_connect(info("nobody_here", ghost));
    EXPECT_EQ(unknown.sqlstate, "28P01") << unknown.error;
    auto plain = try_connect(info("alice", alice).set("sslmode", "disable"));
    EXPECT_EQ(plain.sqlstate, "28000") << plain.error;
    const auto psql = pg_binary("psql").string();
    ConnInfo no_password = info("alice", "");
    Command wrong_psql{{psql, "-X", "-d", no_password.str(), "-c", "SELECT 1"},
                       {{"PGPASSWORD", wrong}}};
    auto wrong_run = run_command(wrong_psql, 30s);
    EXPECT_FALSE(wrong_run.ok()) << wrong_run.output;
    EXPECT_NE(wrong_run.output.find("password authentication failed"), std::string::npos)
        << wrong_run.output;

    // Successes: psql and libpq, with channel binding required.
    Command good_psql{{psql, "-X", "-A", "-t", "-d", no_password.str(), "-c", "SELECT 'psql ok'"},
                      {{"PGPASSWORD", alice}}};
    auto good_run = run_command(good_psql, 30s);
    EXPECT_TRUE(good_run.ok()) << good_run.output;
    EXPECT_NE(good_run.output.find("psql ok"), std::string::npos) << good_run.output;
    auto conn = connect_or_throw(info("alice", alice).set("channel_binding", "require"));
    EXPECT_EQ(query_value(conn.get(), "SELECT current_user"), up.role);

    // A cancel through pgwarden (its keys are pgwarden's own; never printable anyway).
    const std::string marker = unique_name("secrets_cancel");
    ASSERT_EQ(PQsendQuery(conn.get(), ("SELECT pg_sleep(30), '" + marker + "'").c_str()), 1);
    ASSERT_TRUE(wait_query_active(pg, marker, 10s));
    PGcancel* cancel = PQgetCancel(conn.get());
    ASSERT_NE(cancel, nullptr);
    char errbuf[256] = {};
    EXPECT_EQ(PQcancel(cancel, errbuf, sizeof errbuf), 1) << errbuf;
    PQfreeCancel(cancel);
    auto cancelled = collect_results(conn.get(), 15s);
    ASSERT_TRUE(cancelled.has_value());
    ASSERT_FALSE(cancelled->empty());
    EXPECT_EQ(field((*cancelled)[0].get(), PG_DIAG_SQLSTATE), "57014");

    // Reloads: broken configurations whose bad line holds the upstream password inline,
    // then a good one.
    const std::vector<std::string> broken = {
        // Unterminated string on the password line.
        config + "\n[backend.leak1]\naddress = \"localhost:1\"\nuser = \"x\"\npassword = \"" +
            up.password + "\n",
        // Wrong type: the password as an array.
        config + "\n[backend.leak2]\naddress = \"localhost:1\"\nuser = \"x\"\npassword = [\"" +
            up.password + "\"]\n",
        // A password where a number belongs.
        config +
            "\n[backend.leak3]\naddress = \"localhost:1\"\nuser = \"x\"\nconnect_timeout = \"" +
            up.password + "\"\n",
        // Unknown key whose value is the password.
        config + "\n[backend.leak4]\naddress = \"localhost:1\"\nuser = \"x\"\npasword = \"" +
            up.password + "\"\n",
    };
    for (const auto& text : broken) {
      const auto from = proxy->log_size();
      proxy->rewrite_config(text);
      proxy->signal(SIGHUP);
      EXPECT_TRUE(proxy->wait_for_log("reload refused", 10s, from)) << proxy->log();
    }
    const auto from = proxy->log_size();
    proxy->rewrite_config(config);
    proxy->signal(SIGHUP);
    EXPECT_TRUE(proxy->wait_for_log("configuration reloaded", 10s, from)) << proxy->log();
    auto after = try_connect(info("alice", wrong));
    EXPECT_EQ(after.sqlstate, "28P01") << after.error;
    conn.reset();

    proxy->signal(SIGTERM);
    EXPECT_EQ(proxy->wait_exit(15s), std::optional<int>(0)) << proxy->log();
  }  // archived here

  // The logs are not trivially empty: the failures above are in them.
  std::string all_text;
  for (const auto& a : archived()) {
    all_text += a.text;
  }
  EXPECT_NE(all_text.find("auth_failure"), std::string::npos);
  EXPECT_NE(all_text.find("password authentication failed"), std::string::npos);
  EXPECT_NE(all_text.find("reload refused"), std::string::npos);

  std::vector<ArchivedText> scanned = archived();
  scanned.push_back({"postgresql.log", pg.server_log()});
  ASSERT_FALSE(secrets().empty());
  for (const auto& file : scanned) {
    for (const auto& s : secrets()) {
      // The whole value, and a 16-character middle piece (a truncated or quoted leak).
      EXPECT_EQ(file.text.find(s.value), std::string::npos)
          << "'" << s.label << "' appears in " << file.origin;
      if (s.value.size() >= 24) {
        const std::string piece = s.value.substr(s.value.size() / 2 - 8, 16);
        EXPECT_EQ(file.text.find(piece), std::string::npos)
            << "part of '" << s.label << "' appears in " << file.origin;
      }
    }
  }
}

}  // namespace
}  // namespace pgwarden::fixture
