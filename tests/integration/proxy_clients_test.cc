// Real PostgreSQL clients through a real pgwarden (issue 3, "Clients and combinations",
// "Upstream ... SCRAM-SHA-256-PLUS" and "Session"): psql, libpq and pgbench (simple,
// extended, prepared, and a \startpipeline script) work through the proxy; a matrix of
// client TLS (disable / require) x upstream TLS (disable / verify-full) x identity method
// (trust, scram, scram with channel_binding=require, cert, passthrough to a scram role and
// to an md5 role) logs in and runs queries as the expected upstream role; pgwarden's own
// upstream login uses SCRAM-SHA-256-PLUS whenever upstream TLS is on (pg_stat_ssl and the
// audit log); application_name and other startup options reach pg_stat_activity; COPY IN
// and COPY OUT of more than 100 MiB arrive byte for byte; notifications, notices and
// errors arrive unchanged, and the session goes on after an error.
//
// One pgwarden process serves every test of this file (started on first use): one
// listener per (identity method, client TLS, backend) combination and four backends on the
// shared cluster (static credentials or passthrough, each with upstream TLS verify-full or
// disabled). Sessions are matched to their audit events by the client's own address
// (`client` = 127.0.0.1:<local port of the libpq socket>), so tests do not depend on each
// other or on their order. Every wait on the network is bounded (libpq connect deadline,
// poll() with a deadline for COPY and notifications, run_command timeouts).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/users_file.h"
#include "crypto/scram.h"
#include "fixture/certs.h"
#include "fixture/libpq_client.h"
#include "fixture/pg_cluster.h"
#include "fixture/pgwarden_process.h"
#include "fixture/process.h"
#include "fixture/temp_dir.h"
#include "fixture/test_util.h"

namespace pgwarden::fixture {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Distinctive secrets, so a scan of logs and audit files can look for them.
constexpr std::string_view kAppPassword = "clients-upstream-app-Rk7vQ2xW9mZpL4";
constexpr std::string_view kAlicePassword = "clients-alice-scram-Hs4nB8tY3cLqJ6";
constexpr std::string_view kPassScramPassword = "clients-pass-scram-Vd6jE1uN5oKaG3";
constexpr std::string_view kPassMd5Password = "clients-pass-md5-Tg2wF9iM7sXeB8";

constexpr std::string_view kMainListener = "scram_require_up_tls";

// ---------------------------------------------------------------------------- helpers

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  out += '"';
  return out;
}

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 0xf];
  }
  return out;
}

// An incremental OpenSSL digest (SHA-256 for byte-for-byte comparisons, MD5 to compare with
// PostgreSQL's md5()).
class Digest {
 public:
  explicit Digest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, md, nullptr) != 1) {
      throw FixtureError("EVP_DigestInit_ex failed");
    }
  }
  ~Digest() { EVP_MD_CTX_free(ctx_); }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;
  void update(const void* p, std::size_t n) {
    if (EVP_DigestUpdate(ctx_, p, n) != 1) {
      throw FixtureError("EVP_DigestUpdate failed");
    }
  }
  std::string hex_final() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx_, out, &n) != 1) {
      throw FixtureError("EVP_DigestFinal_ex failed");
    }
    return hex(out, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

// "127.0.0.1:<port>" of our end of a libpq connection: what pgwarden writes as `client`.
std::string local_endpoint(PGconn* conn) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(PQsocket(conn), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    throw FixtureError("getsockname failed");
  }
  if (ss.ss_family != AF_INET) {
    throw FixtureError("expected an IPv4 client socket");
  }
  const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ntohs(in->sin_port));
}

// Waits until the libpq socket is readable (or writable) or the deadline passes.
void wait_socket(PGconn* conn, short events, Clock::time_point deadline, const char* what) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) {
    throw FixtureError(std::string("timed out waiting for ") + what);
  }
  pollfd p{PQsocket(conn), events, 0};
  const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
  if (rc < 0 && errno != EINTR) {
    throw FixtureError(std::string("poll failed while waiting for ") + what);
  }
}

// The next result of an asynchronously sent command, without blocking past `deadline`.
PgResultPtr next_result(PGconn* conn, Clock::time_point deadline) {
  while (PQisBusy(conn)) {
    wait_socket(conn, POLLIN, deadline, "a query result");
    if (PQconsumeInput(conn) == 0) {
      throw FixtureError(std::string("connection failed: ") + PQerrorMessage(conn));
    }
  }
  return PgResultPtr(PQgetResult(conn));
}

// Sends `sql` and returns its first result (COPY start, or the one result of a statement).
PgResultPtr send_and_wait(PGconn* conn, const std::string& sql, Clock::time_point deadline) {
  if (PQsendQuery(conn, sql.c_str()) != 1) {
    throw FixtureError(std::string("PQsendQuery failed: ") + PQerrorMessage(conn));
  }
  return next_result(conn, deadline);
}

// Drains the results after the last one a caller looked at; the final one must be null.
void expect_no_more_results(PGconn* conn, Clock::time_point deadline) {
  auto extra = next_result(conn, deadline);
  EXPECT_EQ(extra, nullptr) << "unexpected extra result: "
                            << PQresStatus(PQresultStatus(extra.get()));
}

// COPY ... TO STDOUT; every byte is passed to `sink`. Returns the rows reported by the
// command tag.
std::string copy_out(PGconn* conn, const std::string& sql,
                     const std::function<void(const char*, std::size_t)>& sink,
                     Clock::time_point deadline) {
  auto start = send_and_wait(conn, sql, deadline);
  if (PQresultStatus(start.get()) != PGRES_COPY_OUT) {
    throw FixtureError("COPY OUT did not start: " + std::string(PQresultErrorMessage(start.get())));
  }
  for (;;) {
    char* buf = nullptr;
    const int n = PQgetCopyData(conn, &buf, 1);
    if (n > 0) {
      sink(buf, static_cast<std::size_t>(n));
      PQfreemem(buf);
      continue;
    }
    if (n == -1) {
      break;  // end of COPY; the command's result follows
    }
    if (n == -2) {
      throw FixtureError(std::string("COPY OUT failed: ") + PQerrorMessage(conn));
    }
    wait_socket(conn, POLLIN, deadline, "COPY OUT data");
    if (PQconsumeInput(conn) == 0) {
      throw FixtureError(std::string("connection failed: ") + PQerrorMessage(conn));
    }
  }
  auto done = next_result(conn, deadline);
  if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) {
    throw FixtureError("COPY OUT did not end well: " +
                       std::string(PQresultErrorMessage(done.get())));
  }
  std::string rows = PQcmdTuples(done.get());
  expect_no_more_results(conn, deadline);
  return rows;
}

// COPY ... FROM STDIN with `data` sent in `chunk`-byte CopyData messages, in nonblocking
// mode so a stalled proxy fails the test instead of hanging it. Returns the rows reported by
// the command tag.
std::string copy_in(PGconn* conn, const std::string& sql, std::string_view data, std::size_t chunk,
                    Clock::time_point deadline) {
  auto start = send_and_wait(conn, sql, deadline);
  if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
    throw FixtureError("COPY IN did not start: " + std::string(PQresultErrorMessage(start.get())));
  }
  if (PQsetnonblocking(conn, 1) != 0) {
    throw FixtureError("PQsetnonblocking failed");
  }
  auto pump = [&] {
    wait_socket(conn, POLLIN | POLLOUT, deadline, "room to send COPY data");
    if (PQconsumeInput(conn) == 0) {
      throw FixtureError(std::string("connection failed: ") + PQerrorMessage(conn));
    }
  };
  for (std::size_t off = 0; off < data.size();) {
    const std::size_t n = std::min(chunk, data.size() - off);
    const int rc = PQputCopyData(conn, data.data() + off, static_cast<int>(n));
    if (rc < 0) {
      throw FixtureError(std::string("PQputCopyData failed: ") + PQerrorMessage(conn));
    }
    if (rc == 0) {
      pump();
      continue;
    }
    off += n;
  }
  for (;;) {
    const int rc = PQputCopyEnd(conn, nullptr);
    if (rc < 0) {
      throw FixtureError(std::string("PQputCopyEnd failed: ") + PQerrorMessage(conn));
    }
    if (rc == 1) {
      break;
    }
    pump();
  }
  for (;;) {
    const int rc = PQflush(conn);
    if (rc < 0) {
      throw FixtureError(std::string("PQflush failed: ") + PQerrorMessage(conn));
    }
    if (rc == 0) {
      break;
    }
    pump();
  }
  PQsetnonblocking(conn, 0);
  auto done = next_result(conn, deadline);
  if (PQresultStatus(done.get()) != PGRES_COMMAND_OK) {
    throw FixtureError("COPY IN did not end well: " +
                       std::string(PQresultErrorMessage(done.get())));
  }
  std::string rows = PQcmdTuples(done.get());
  expect_no_more_results(conn, deadline);
  return rows;
}

// Every field of an ErrorResponse/NoticeResponse that libpq exposes: what "unchanged" means.
using Fields = std::map<char, std::string>;

Fields result_fields(const PGresult* res) {
  static constexpr int kCodes[] = {
      PG_DIAG_SEVERITY,           PG_DIAG_SEVERITY_NONLOCALIZED,
      PG_DIAG_SQLSTATE,           PG_DIAG_MESSAGE_PRIMARY,
      PG_DIAG_MESSAGE_DETAIL,     PG_DIAG_MESSAGE_HINT,
      PG_DIAG_STATEMENT_POSITION, PG_DIAG_INTERNAL_POSITION,
      PG_DIAG_INTERNAL_QUERY,     PG_DIAG_CONTEXT,
      PG_DIAG_SCHEMA_NAME,        PG_DIAG_TABLE_NAME,
      PG_DIAG_COLUMN_NAME,        PG_DIAG_DATATYPE_NAME,
      PG_DIAG_CONSTRAINT_NAME,    PG_DIAG_SOURCE_FILE,
      PG_DIAG_SOURCE_LINE,        PG_DIAG_SOURCE_FUNCTION,
  };
  Fields out;
  for (int code : kCodes) {
    if (const char* v = PQresultErrorField(res, code)) {
      out[static_cast<char>(code)] = v;
    }
  }
  return out;
}

std::string describe(const Fields& f) {
  std::string out;
  for (const auto& [k, v] : f) {
    out += std::string(1, k) + "=" + v + "; ";
  }
  return out;
}

// The fields of the error a statement fails with (simple protocol, or extended with params).
Fields error_fields(PGconn* conn, const std::string& sql,
                    const std::vector<std::string>& params = {}) {
  PgResultPtr res;
  if (params.empty()) {
    res.reset(PQexec(conn, sql.c_str()));
  } else {
    std::vector<const char*> values;
    for (const auto& p : params) {
      values.push_back(p.c_str());
    }
    res.reset(PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                           values.data(), nullptr, nullptr, 0));
  }
  if (!res || PQresultStatus(res.get()) != PGRES_FATAL_ERROR) {
    throw FixtureError("expected an error from: " + sql);
  }
  return result_fields(res.get());
}

void collect_notice(void* arg, const PGresult* res) {
  static_cast<std::vector<Fields>*>(arg)->push_back(result_fields(res));
}

// ---------------------------------------------------------------------------- environment

enum class Who { kScramUser, kTrustUser, kCertUser, kPassScram, kPassMd5 };

struct BackendSpec {
  const char* name;
  bool tls;
  bool passthrough;
};

constexpr BackendSpec kBackends[] = {
    {"up_tls", true, false},
    {"up_plain", false, false},
    {"pass_tls", true, true},
    {"pass_plain", false, true},
};

struct ListenerSpec {
  const char* name;
  const char* backend;
  bool tls;  // tls = "require" (else "disable")
  const char* auth;
};

constexpr ListenerSpec kListeners[] = {
    {"scram_disable_up_tls", "up_tls", false, "scram"},
    {"scram_disable_up_plain", "up_plain", false, "scram"},
    {"scram_require_up_tls", "up_tls", true, "scram"},
    {"scram_require_up_plain", "up_plain", true, "scram"},
    {"trust_disable_up_tls", "up_tls", false, "trust"},
    {"trust_disable_up_plain", "up_plain", false, "trust"},
    {"trust_require_up_tls", "up_tls", true, "trust"},
    {"trust_require_up_plain", "up_plain", true, "trust"},
    {"cert_require_up_tls", "up_tls", true, "cert"},
    {"cert_require_up_plain", "up_plain", true, "cert"},
    {"pass_disable_pass_tls", "pass_tls", false, "passthrough"},
    {"pass_disable_pass_plain", "pass_plain", false, "passthrough"},
    {"pass_require_pass_tls", "pass_tls", true, "passthrough"},
    {"pass_require_pass_plain", "pass_plain", true, "passthrough"},
};

const ListenerSpec& listener_spec(std::string_view name) {
  for (const auto& l : kListeners) {
    if (l.name == name) {
      return l;
    }
  }
  throw FixtureError("no listener " + std::string(name));
}

const BackendSpec& backend_spec(std::string_view name) {
  for (const auto& b : kBackends) {
    if (b.name == name) {
      return b;
    }
  }
  throw FixtureError("no backend " + std::string(name));
}

// The roles, certificates and the one pgwarden process every test here shares.
struct Env {
  PgCluster* pg = nullptr;
  std::string app_role;    // upstream role of the static backends (scram)
  std::string pass_scram;  // role for passthrough, scram-sha-256
  std::string pass_md5;    // role for passthrough, md5
  std::string alice;       // pgwarden users-file user (not a PostgreSQL role)
  std::string trust_user;  // startup user for trust (not a PostgreSQL role)
  std::string cert_cn;     // identity from the client certificate
  std::unique_ptr<TempDir> pki_dir;
  CertFiles client_cert;
  fs::path client_ca;
  std::map<std::string, std::uint16_t, std::less<>> ports;
  std::unique_ptr<PgwardenProcess> proxy;

  void start() {
    pg = &shared_cluster();
    app_role = unique_name("clients_app");
    pass_scram = unique_name("clients_pscram");
    pass_md5 = unique_name("clients_pmd5");
    alice = unique_name("clients_alice");
    trust_user = unique_name("clients_trusty");
    cert_cn = "carol." + unique_name("clients") + "@example.com";
    // Every role may also log in without TLS (`host` lines): the same role serves the
    // upstream-TLS and the upstream-plaintext backends.
    pg->create_roles({
        RoleSpec{app_role, AuthMethod::kScram, std::string(kAppPassword), true, ""},
        RoleSpec{pass_scram, AuthMethod::kScram, std::string(kPassScramPassword), true, ""},
        RoleSpec{pass_md5, AuthMethod::kMd5, std::string(kPassMd5Password), true, ""},
    });

    pki_dir = std::make_unique<TempDir>("clients-pki");
    auto ca = CertAuthority::create(pki_dir->path(), "clients-ca", "pgwarden clients test CA");
    client_ca = ca.cert();
    LeafSpec leaf;
    leaf.common_name = cert_cn;
    leaf.usage = CertUsage::kClient;
    client_cert = ca.issue(leaf, "carol");

    auto verifier = crypto::make_scram_verifier(kAlicePassword);
    if (!verifier) {
      throw FixtureError("make_scram_verifier failed");
    }
    const std::string users = config::quote_users_file_field(alice) + " " +
                              config::quote_users_file_field(verifier->to_string()) + "\n";

    std::set<std::uint16_t> taken;
    for (const auto& l : kListeners) {
      std::uint16_t port = 0;
      do {
        port = pick_free_port();
      } while (taken.contains(port) || port == pg->port());
      taken.insert(port);
      ports[l.name] = port;
    }

    PgwardenOptions options;
    options.config = config_text();
    options.files.push_back({"users.txt", users});
    options.env.emplace_back("CLIENTS_APP_PASSWORD", std::string(kAppPassword));
    for (const auto& [name, port] : ports) {
      options.ports.push_back(port);
    }
    proxy = PgwardenProcess::start(std::move(options));
  }

  std::string config_text() const {
    std::ostringstream t;
    t << "[server]\nworkers = 2\nshutdown_grace = \"2s\"\n\n";
    t << "[audit]\npath = \"@DIR@/audit.jsonl\"\n\n";
    const std::string address = toml_string("localhost:" + std::to_string(pg->port()));
    for (const auto& b : kBackends) {
      t << "[backend." << b.name << "]\n";
      t << "address = " << address << "\n";
      if (b.tls) {
        t << "tls = \"verify-full\"\ntls_ca = " << toml_string(pg->ca_cert().string()) << "\n";
      } else {
        t << "tls = \"disable\"\n";
      }
      if (b.passthrough) {
        t << "credentials = \"passthrough\"\n";
      } else {
        t << "credentials = \"static\"\nuser = " << toml_string(app_role)
          << "\npassword = \"${CLIENTS_APP_PASSWORD}\"\n";
      }
      t << "\n";
    }
    for (const auto& l : kListeners) {
      t << "[[listener]]\n";
      t << "name = \"" << l.name << "\"\n";
      t << "listen = \"127.0.0.1:" << ports.at(l.name) << "\"\n";
      t << "backend = \"" << l.backend << "\"\n";
      if (l.tls) {
        t << "tls = \"require\"\n";
        t << "tls_cert = " << toml_string(pg->server_cert().cert.string()) << "\n";
        t << "tls_key = " << toml_string(pg->server_cert().key.string()) << "\n";
      } else {
        t << "tls = \"disable\"\n";
      }
      t << "auth = [\"" << l.auth << "\"]\n";
      if (std::string_view(l.auth) == "scram") {
        t << "users_file = \"@DIR@/users.txt\"\n";
      }
      if (std::string_view(l.auth) == "cert") {
        t << "client_ca = " << toml_string(client_ca.string()) << "\n";
        t << "client_cert = \"require\"\ncert_identity = \"cn\"\n";
      }
      t << "\n";
    }
    return t.str();
  }

  // libpq parameters for a session through `listener`, as `who`.
  ConnInfo conninfo(std::string_view listener, Who who,
                    const std::string& dbname = "postgres") const {
    const auto& spec = listener_spec(listener);
    ConnInfo ci;
    ci.set("host", "127.0.0.1");
    ci.set("port", std::to_string(ports.at(std::string(listener))));
    ci.set("dbname", dbname);
    switch (who) {
      case Who::kScramUser:
        ci.set("user", alice).set("password", std::string(kAlicePassword));
        break;
      case Who::kTrustUser:
        ci.set("user", trust_user);
        break;
      case Who::kCertUser:
        // The startup user is not the identity: the certificate decides.
        ci.set("user", "whoever");
        ci.set("sslcert", client_cert.cert.string()).set("sslkey", client_cert.key.string());
        break;
      case Who::kPassScram:
        ci.set("user", pass_scram).set("password", std::string(kPassScramPassword));
        break;
      case Who::kPassMd5:
        ci.set("user", pass_md5).set("password", std::string(kPassMd5Password));
        break;
    }
    if (spec.tls) {
      ci.set("sslmode", "verify-full").set("sslrootcert", pg->ca_cert().string());
    } else {
      ci.set("sslmode", "disable");
    }
    ci.set("gssencmode", "disable");
    ci.set("connect_timeout", "10");
    return ci;
  }

  std::string upstream_role(Who who, std::string_view listener) const {
    const auto& b = backend_spec(listener_spec(listener).backend);
    if (!b.passthrough) {
      return app_role;
    }
    return who == Who::kPassMd5 ? pass_md5 : pass_scram;
  }

  std::string identity_name(Who who) const {
    switch (who) {
      case Who::kScramUser:
        return alice;
      case Who::kTrustUser:
        return trust_user;
      case Who::kCertUser:
        return cert_cn;
      case Who::kPassScram:
        return pass_scram;
      case Who::kPassMd5:
        return pass_md5;
    }
    return {};
  }

  // Complete audit lines parsed so far (a line still being written is skipped).
  std::vector<json> audit_events() const {
    std::vector<json> out;
    const std::string text = slurp(proxy->dir() / "audit.jsonl");
    std::size_t pos = 0;
    while (pos < text.size()) {
      const auto nl = text.find('\n', pos);
      if (nl == std::string::npos) {
        break;
      }
      auto j = json::parse(text.substr(pos, nl - pos), nullptr, false);
      if (!j.is_discarded()) {
        out.push_back(std::move(j));
      }
      pos = nl + 1;
    }
    return out;
  }

  // The first audit event `event` of the session whose client address is `client`, once it
  // has been written (session_start follows the client's ReadyForQuery by a moment).
  std::optional<json> wait_audit(const std::string& event, const std::string& client,
                                 std::chrono::milliseconds timeout = 10s) const {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      for (auto& e : audit_events()) {
        if (e.value("event", "") == event && e.value("client", "") == client) {
          return e;
        }
      }
      if (Clock::now() > deadline) {
        return std::nullopt;
      }
      std::this_thread::sleep_for(25ms);
    }
  }
};

Env* g_env = nullptr;
std::string g_env_error;

// Started once per test binary, from the first test of this file that runs (the main
// thread), and stopped at exit.
void ensure_env() {
  static std::unique_ptr<Env> env;
  if (env || !g_env_error.empty()) {
    return;
  }
  try {
    auto e = std::make_unique<Env>();
    e->start();
    env = std::move(e);
    g_env = env.get();
  } catch (const std::exception& ex) {
    g_env_error = ex.what();
  }
}

class ProxyClients : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ensure_env(); }
  void SetUp() override {
    ASSERT_TRUE(g_env_error.empty()) << g_env_error;
    ASSERT_NE(g_env, nullptr);
  }
  Env& env() { return *g_env; }
  PgCluster& pg() { return *g_env->pg; }

  PgConnPtr connect(const ConnInfo& ci) {
    auto out = try_connect(ci);
    if (!out.ok()) {
      ADD_FAILURE() << "connect through pgwarden failed: " << out.error << "\n--- pgwarden log:\n"
                    << env().proxy->log();
    }
    return std::move(out.conn);
  }

  std::string upstream_pid(PGconn* c) { return query_value(c, "SELECT pg_backend_pid()::text"); }
};

// ---------------------------------------------------------------------------- 1. clients

TEST_F(ProxyClients, PsqlRunsQueriesAndReportsErrors) {
  ConnInfo ci = env().conninfo(kMainListener, Who::kScramUser);
  ci.set("channel_binding", "require");
  Command cmd;
  cmd.argv = {pg_binary("psql").string(),
              "-X",
              "-A",
              "-t",
              "-v",
              "ON_ERROR_STOP=1",
              "-c",
              "SELECT current_user",
              "-c",
              "SELECT sum(x) FROM generate_series(1, 10) x",
              "-c",
              "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"};
  cmd.env = ci.env();
  auto ok = run_command(cmd, 60s);
  ASSERT_TRUE(ok.ok()) << ok.status_text() << "\n" << ok.output;
  EXPECT_EQ(ok.output, env().app_role + "\n55\nt\n");

  // psql's own error path: the server's error text arrives, psql exits 1 (ON_ERROR_STOP).
  cmd.argv = {pg_binary("psql").string(), "-X", "-A",        "-t", "-v",
              "ON_ERROR_STOP=1",          "-c", "SELECT 1/0"};
  auto bad = run_command(cmd, 60s);
  EXPECT_FALSE(bad.timed_out);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("ERROR:  division by zero"), std::string::npos) << bad.output;
}

TEST_F(ProxyClients, LibpqSimpleAndExtendedQueries) {
  auto c = connect(env().conninfo(kMainListener, Who::kScramUser));
  ASSERT_TRUE(c);
  EXPECT_EQ(query_value(c.get(), "SELECT current_user"), env().app_role);
  // Extended protocol with parameters, several rows, NULLs.
  auto rows = query_rows(c.get(),
                         "SELECT x, CASE WHEN x % 2 = 0 THEN NULL ELSE $1::text || x END "
                         "FROM generate_series(1, $2::int) x ORDER BY x",
                         {"odd-", "4"});
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], (Row{"1", "odd-1"}));
  EXPECT_EQ(rows[1], (Row{"2", std::nullopt}));
  EXPECT_EQ(rows[2], (Row{"3", "odd-3"}));
  EXPECT_EQ(rows[3], (Row{"4", std::nullopt}));
  // A multi-statement simple query returns its last result.
  EXPECT_EQ(query_value(c.get(), "SELECT 1; SELECT 'two'"), "two");
  // A named prepared statement, executed twice.
  PgResultPtr prep(PQprepare(c.get(), "clients_stmt", "SELECT $1::int * 3", 1, nullptr));
  ASSERT_EQ(PQresultStatus(prep.get()), PGRES_COMMAND_OK) << PQerrorMessage(c.get());
  for (const char* v : {"7", "14"}) {
    const char* values[] = {v};
    PgResultPtr r(PQexecPrepared(c.get(), "clients_stmt", 1, values, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQerrorMessage(c.get());
    EXPECT_EQ(std::string(PQgetvalue(r.get(), 0, 0)), std::to_string(std::stoi(v) * 3));
  }
}

TEST_F(ProxyClients, PgbenchSimpleExtendedPreparedAndPipeline) {
  // Tables made directly on PostgreSQL by the superuser, then used through pgwarden.
  const std::string db = unique_name("clients_bench");
  pg().exec("CREATE DATABASE " + db);
  Command init;
  init.argv = {pg_binary("pgbench").string(), "-i", "-s", "1", "-q"};
  init.env = pg().superuser_conninfo().set("dbname", db).env();
  auto init_result = run_command(init, 120s);
  ASSERT_TRUE(init_result.ok()) << init_result.status_text() << "\n" << init_result.output;
  {
    auto su = connect_or_throw(pg().superuser_conninfo().set("dbname", db));
    query_rows(su.get(), "GRANT ALL ON ALL TABLES IN SCHEMA public TO " + env().app_role);
  }
  auto history_rows = [&] {
    auto su = connect_or_throw(pg().superuser_conninfo().set("dbname", db));
    return std::stol(query_value(su.get(), "SELECT count(*)::text FROM pgbench_history"));
  };

  TempDir scripts("clients-pgbench");
  const fs::path pipeline = scripts / "pipeline.sql";
  {
    std::ofstream f(pipeline);
    f << "\\set aid random(1, 100000)\n"
         "\\set delta random(-5000, 5000)\n"
         "\\startpipeline\n"
         "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
         "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n"
         "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
         "VALUES (1, 1, :aid, :delta, CURRENT_TIMESTAMP);\n"
         "\\endpipeline\n";
  }

  struct Run {
    std::string name;
    std::vector<std::string> args;
  };
  const std::vector<Run> runs = {
      {"simple", {"-M", "simple"}},
      {"extended", {"-M", "extended"}},
      {"prepared", {"-M", "prepared"}},
      {"pipeline", {"-M", "extended", "-f", pipeline.string()}},
  };
  const ConnInfo ci = env().conninfo(kMainListener, Who::kScramUser, db);
  for (const auto& run : runs) {
    SCOPED_TRACE("pgbench " + run.name);
    const long before = history_rows();
    Command cmd;
    cmd.argv = {pg_binary("pgbench").string(), "-n", "-t", "50", "-c", "2"};
    cmd.argv.insert(cmd.argv.end(), run.args.begin(), run.args.end());
    cmd.env = ci.env();
    auto r = run_command(cmd, 120s);
    ASSERT_TRUE(r.ok()) << r.status_text() << "\n" << r.output;
    EXPECT_NE(r.output.find("number of transactions actually processed: 100/100"),
              std::string::npos)
        << r.output;
    // Each transaction of both scripts inserts one history row, upstream.
    EXPECT_EQ(history_rows() - before, 100);
  }
}

// ---------------------------------------------------------------------------- 2. matrix

struct MatrixCase {
  const char* name;
  const char* listener;
  Who who;
  const char* channel_binding;  // "" = libpq's default (prefer)
};

void PrintTo(const MatrixCase& c, std::ostream* os) {
  *os << c.name;
}

constexpr MatrixCase kMatrix[] = {
    {"ScramPlainClientTlsUpstream", "scram_disable_up_tls", Who::kScramUser, ""},
    {"ScramPlainClientPlainUpstream", "scram_disable_up_plain", Who::kScramUser, ""},
    {"ScramTlsClientTlsUpstream", "scram_require_up_tls", Who::kScramUser, ""},
    {"ScramTlsClientPlainUpstream", "scram_require_up_plain", Who::kScramUser, ""},
    {"ScramChannelBindingTlsUpstream", "scram_require_up_tls", Who::kScramUser, "require"},
    {"ScramChannelBindingPlainUpstream", "scram_require_up_plain", Who::kScramUser, "require"},
    {"TrustPlainClientTlsUpstream", "trust_disable_up_tls", Who::kTrustUser, ""},
    {"TrustPlainClientPlainUpstream", "trust_disable_up_plain", Who::kTrustUser, ""},
    {"TrustTlsClientTlsUpstream", "trust_require_up_tls", Who::kTrustUser, ""},
    {"TrustTlsClientPlainUpstream", "trust_require_up_plain", Who::kTrustUser, ""},
    {"CertTlsUpstream", "cert_require_up_tls", Who::kCertUser, ""},
    {"CertPlainUpstream", "cert_require_up_plain", Who::kCertUser, ""},
    {"PassthroughScramPlainClientTlsUpstream", "pass_disable_pass_tls", Who::kPassScram, ""},
    {"PassthroughScramPlainClientPlainUpstream", "pass_disable_pass_plain", Who::kPassScram, ""},
    // Both legs TLS: pgwarden takes the password inside the client's TLS and runs
    // SCRAM-SHA-256-PLUS upstream itself, so libpq's default (channel_binding=prefer) works.
    {"PassthroughScramTlsClientTlsUpstream", "pass_require_pass_tls", Who::kPassScram, ""},
    {"PassthroughScramTlsClientPlainUpstream", "pass_require_pass_plain", Who::kPassScram, ""},
    {"PassthroughMd5PlainClientTlsUpstream", "pass_disable_pass_tls", Who::kPassMd5, ""},
    {"PassthroughMd5PlainClientPlainUpstream", "pass_disable_pass_plain", Who::kPassMd5, ""},
    {"PassthroughMd5TlsClientTlsUpstream", "pass_require_pass_tls", Who::kPassMd5, ""},
    {"PassthroughMd5TlsClientPlainUpstream", "pass_require_pass_plain", Who::kPassMd5, ""},
};

class ProxyClientMatrix : public ProxyClients, public ::testing::WithParamInterface<MatrixCase> {};

TEST_P(ProxyClientMatrix, LogsInAndQueriesAsTheExpectedUpstreamRole) {
  const MatrixCase& mc = GetParam();
  const auto& listener = listener_spec(mc.listener);
  const auto& backend = backend_spec(listener.backend);
  ConnInfo ci = env().conninfo(mc.listener, mc.who);
  if (*mc.channel_binding != '\0') {
    ci.set("channel_binding", mc.channel_binding);
  }
  const std::string app_name = "clients-matrix-" + std::string(mc.name);
  ci.set("application_name", app_name);

  auto c = connect(ci);
  ASSERT_TRUE(c);
  const std::string client = local_endpoint(c.get());
  // Client leg: TLS exactly when the listener requires it.
  EXPECT_EQ(PQsslInUse(c.get()) == 1, listener.tls);

  // Upstream: who we are, whether the server's side of the session is TLS, results.
  auto rows = query_rows(c.get(),
                         "SELECT current_user, "
                         "(SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()), "
                         "current_setting('application_name'), "
                         "(SELECT sum(x)::text FROM generate_series(1, 100) x)");
  ASSERT_EQ(rows.size(), 1u);
  const std::string expected_role = env().upstream_role(mc.who, mc.listener);
  EXPECT_EQ(rows[0][0], expected_role);
  EXPECT_EQ(rows[0][1], backend.tls ? "true" : "false");
  EXPECT_EQ(rows[0][2], app_name);
  EXPECT_EQ(rows[0][3], "5050");
  EXPECT_EQ(query_value(c.get(), "SELECT $1::int + $2::int", {"40", "2"}), "42");

  // The audit log names the identity pgwarden established, and how it logged in upstream.
  auto start = env().wait_audit("session_start", client);
  ASSERT_TRUE(start.has_value()) << "no session_start for " << client;
  const json& e = *start;
  EXPECT_EQ(e.value("listener", ""), listener.name);
  EXPECT_EQ(e.value("backend", ""), listener.backend);
  EXPECT_EQ(e.value("backend_user", ""), expected_role);
  EXPECT_EQ(e.value("database", ""), "postgres");
  ASSERT_TRUE(e.contains("identity") && e["identity"].is_object()) << e.dump();
  EXPECT_EQ(e["identity"].value("name", ""), env().identity_name(mc.who));
  EXPECT_EQ(e["identity"].value("method", ""), std::string(listener.auth));
  if (listener.tls) {
    ASSERT_TRUE(e["tls"].is_object()) << e.dump();
    EXPECT_TRUE(e["tls"].value("version", "").starts_with("TLSv1.")) << e.dump();
  } else {
    EXPECT_TRUE(e["tls"].is_null()) << e.dump();
  }
  std::string expected_auth;
  if (backend.passthrough) {
    if (mc.who == Who::kPassMd5) {
      expected_auth = "passthrough (md5)";
    } else if (listener.tls && backend.tls) {
      expected_auth = "passthrough (password, SCRAM-SHA-256-PLUS)";
    } else {
      expected_auth = "passthrough (SCRAM-SHA-256)";
    }
  } else {
    // pgwarden's own login: channel binding whenever the upstream leg is TLS.
    expected_auth = backend.tls ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
  }
  EXPECT_EQ(e.value("upstream_auth", ""), expected_auth) << e.dump();
  if (mc.who == Who::kCertUser) {
    ASSERT_TRUE(e["tls"].is_object());
    EXPECT_EQ(e["tls"].value("client_subject", ""), "CN=" + env().cert_cn) << e.dump();
    EXPECT_EQ(e["identity"].value("cert_subject", ""), "CN=" + env().cert_cn) << e.dump();
  }
}

INSTANTIATE_TEST_SUITE_P(Combinations, ProxyClientMatrix, ::testing::ValuesIn(kMatrix),
                         [](const ::testing::TestParamInfo<MatrixCase>& case_info) {
                           return std::string(case_info.param.name);
                         });

// A wrong password in passthrough mode is the server's verdict, relayed to the client.
TEST_F(ProxyClients, PassthroughWrongPasswordIsRefusedByTheServer) {
  for (Who who : {Who::kPassScram, Who::kPassMd5}) {
    ConnInfo ci = env().conninfo("pass_disable_pass_plain", who);
    ci.set("password", "clients-not-the-password-Qe3rT7");
    auto out = try_connect(ci);
    EXPECT_FALSE(out.ok());
    EXPECT_EQ(out.sqlstate, "28P01") << out.error;
  }
}

// ---------------------------------------------------------------------------- 3. -PLUS

TEST_F(ProxyClients, UpstreamUsesScramPlusWheneverUpstreamTlsIsOn) {
  std::vector<std::string> clients;
  for (const char* listener : {"scram_require_up_tls", "scram_disable_up_tls",
                               "trust_require_up_tls", "cert_require_up_tls"}) {
    SCOPED_TRACE(listener);
    const Who who = std::string_view(listener).starts_with("scram")   ? Who::kScramUser
                    : std::string_view(listener).starts_with("trust") ? Who::kTrustUser
                                                                      : Who::kCertUser;
    auto c = connect(env().conninfo(listener, who));
    ASSERT_TRUE(c);
    const std::string pid = upstream_pid(c.get());
    // The server's view of this very session, asked over a separate superuser connection.
    auto rows = pg().query(
        "SELECT s.ssl::text, a.usename FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
        "WHERE pid = $1::int",
        {pid});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0][0], "true");
    EXPECT_EQ(rows[0][1], env().app_role);
    const std::string client = local_endpoint(c.get());
    auto start = env().wait_audit("session_start", client);
    ASSERT_TRUE(start.has_value()) << client;
    EXPECT_EQ(start->value("upstream_auth", ""), "SCRAM-SHA-256-PLUS") << start->dump();
    clients.push_back(client);
  }
  // Every session pgwarden logged in itself over upstream TLS, in this whole run, used -PLUS.
  int seen = 0;
  for (const auto& e : env().audit_events()) {
    if (e.value("event", "") == "session_start" && e.value("backend", "") == "up_tls") {
      ++seen;
      EXPECT_EQ(e.value("upstream_auth", ""), "SCRAM-SHA-256-PLUS") << e.dump();
    }
  }
  EXPECT_GE(seen, static_cast<int>(clients.size()));
}

// ---------------------------------------------------------------------------- 4. startup params

TEST_F(ProxyClients, ApplicationNameAndOptionsReachTheServer) {
  const std::string app_name = unique_name("clients-app-name");
  ConnInfo ci = env().conninfo(kMainListener, Who::kScramUser);
  ci.set("application_name", app_name);
  ci.set("options", "-c statement_timeout=43210 -c search_path=clients_nowhere,public");
  auto c = connect(ci);
  ASSERT_TRUE(c);
  const std::string pid = upstream_pid(c.get());

  // While the proxied session is open, the server lists it under the client's name.
  auto rows = pg().query(
      "SELECT pid::text, usename, application_name FROM pg_stat_activity "
      "WHERE application_name = $1",
      {app_name});
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], pid);
  EXPECT_EQ(rows[0][1], env().app_role);
  EXPECT_EQ(rows[0][2], app_name);

  EXPECT_EQ(query_value(c.get(), "SHOW statement_timeout"), "43210ms");
  EXPECT_EQ(query_value(c.get(), "SHOW search_path"), "clients_nowhere,public");

  // A change made during the session is the server's business: it shows up there too.
  const std::string renamed = app_name + "-renamed";
  query_rows(c.get(), "SET application_name = '" + renamed + "'");
  EXPECT_EQ(
      pg().query_value("SELECT application_name FROM pg_stat_activity WHERE pid = $1::int", {pid}),
      renamed);
  // libpq tracks it from the ParameterStatus pgwarden forwarded.
  EXPECT_EQ(std::string(PQparameterStatus(c.get(), "application_name")), renamed);
}

// ---------------------------------------------------------------------------- 5. COPY

TEST_F(ProxyClients, CopyOutAndInOfMoreThan100MiBMatchByteForByte) {
  constexpr long kRows = 1'500'000;
  constexpr std::size_t kMinBytes = 100u * 1024 * 1024;
  const std::string rows_sql =
      "SELECT n, md5(n::text) || md5((n * 7)::text) AS t FROM generate_series(1, " +
      std::to_string(kRows) + ") n";
  const std::string copy_sql = "COPY (" + rows_sql + ") TO STDOUT";
  const auto deadline = Clock::now() + 120s;

  // Reference: COPY OUT directly from PostgreSQL, kept for the COPY IN below.
  std::string direct;
  direct.reserve(kMinBytes + kMinBytes / 8);
  {
    auto su = pg().connect_superuser();
    const auto n = copy_out(
        su.get(), copy_sql, [&](const char* p, std::size_t len) { direct.append(p, len); },
        deadline);
    ASSERT_EQ(n, std::to_string(kRows));
  }
  ASSERT_GE(direct.size(), kMinBytes);
  Digest direct_sha(EVP_sha256());
  direct_sha.update(direct.data(), direct.size());
  const std::string direct_digest = direct_sha.hex_final();

  auto c = connect(env().conninfo(kMainListener, Who::kScramUser));
  ASSERT_TRUE(c);

  // COPY OUT through pgwarden (client TLS, upstream TLS).
  Digest proxied_sha(EVP_sha256());
  std::size_t proxied_bytes = 0;
  const auto n_out = copy_out(
      c.get(), copy_sql,
      [&](const char* p, std::size_t len) {
        proxied_sha.update(p, len);
        proxied_bytes += len;
      },
      deadline);
  EXPECT_EQ(n_out, std::to_string(kRows));
  EXPECT_EQ(proxied_bytes, direct.size());
  EXPECT_EQ(proxied_sha.hex_final(), direct_digest);

  // COPY IN through pgwarden of the same bytes, in 64 KiB CopyData messages.
  query_rows(c.get(), "CREATE TEMP TABLE clients_copy_in (n int, t text)");
  const auto n_in =
      copy_in(c.get(), "COPY clients_copy_in (n, t) FROM STDIN", direct, 64 * 1024, deadline);
  EXPECT_EQ(n_in, std::to_string(kRows));

  // The server's digest of what arrived, against ours of what was sent (the text form
  // without the final newline: string_agg puts separators only between rows).
  Digest sent_md5(EVP_md5());
  sent_md5.update(direct.data(), direct.size() - 1);
  const std::string expected_md5 = sent_md5.hex_final();
  auto got = query_rows(c.get(),
                        "SELECT count(*)::text, md5(string_agg(n::text || E'\\t' || t, E'\\n' "
                        "ORDER BY n)) FROM clients_copy_in");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0][0], std::to_string(kRows));
  EXPECT_EQ(got[0][1], expected_md5);
  // And the server agrees with itself on the generated rows (the digest is not vacuous).
  EXPECT_EQ(pg().query_value("SELECT md5(string_agg(n::text || E'\\t' || t, E'\\n' ORDER BY n)) "
                             "FROM (" +
                             rows_sql + ") s"),
            expected_md5);
  // The session is still usable after 200+ MiB went through it.
  EXPECT_EQ(query_value(c.get(), "SELECT 'still here'"), "still here");

  // pgwarden's own accounting saw at least the COPY bytes in each direction.
  const std::string client = local_endpoint(c.get());
  c.reset();
  auto end = env().wait_audit("session_end", client);
  ASSERT_TRUE(end.has_value()) << client;
  EXPECT_GE(end->value("bytes_in", std::uint64_t{0}), direct.size()) << end->dump();
  EXPECT_GE(end->value("bytes_out", std::uint64_t{0}), direct.size()) << end->dump();
  EXPECT_EQ(end->value("reason", ""), "client terminated") << end->dump();
}

// ---------------------------------------------------------------------------- 6. async

TEST_F(ProxyClients, NotificationWithPayloadArrivesFromAnotherProxiedSession) {
  auto listener = connect(env().conninfo(kMainListener, Who::kScramUser));
  auto notifier = connect(env().conninfo("scram_disable_up_plain", Who::kScramUser));
  ASSERT_TRUE(listener && notifier);
  const std::string channel = unique_name("clients_chan");
  const std::string payload = "payload: ünïcödé, 'quotes', and a tab\there";
  query_rows(listener.get(), "LISTEN " + channel);
  const std::string notifier_pid = upstream_pid(notifier.get());
  query_rows(notifier.get(), "SELECT pg_notify($1, $2)", {channel, payload});

  const auto deadline = Clock::now() + 10s;
  std::unique_ptr<PGnotify, decltype(&PQfreemem)> note(nullptr, &PQfreemem);
  while (!note) {
    ASSERT_EQ(PQconsumeInput(listener.get()), 1) << PQerrorMessage(listener.get());
    note.reset(PQnotifies(listener.get()));
    if (!note) {
      ASSERT_NO_THROW(wait_socket(listener.get(), POLLIN, deadline, "a notification"));
    }
  }
  EXPECT_EQ(std::string(note->relname), channel);
  EXPECT_EQ(std::string(note->extra), payload);
  EXPECT_EQ(std::to_string(note->be_pid), notifier_pid);

  // A notification sent inside a transaction arrives on commit, exactly once.
  query_rows(notifier.get(), "BEGIN");
  query_rows(notifier.get(), "NOTIFY " + channel + ", 'second'");
  query_rows(notifier.get(), "COMMIT");
  std::vector<std::string> payloads;
  const auto deadline2 = Clock::now() + 10s;
  while (payloads.empty()) {
    ASSERT_EQ(PQconsumeInput(listener.get()), 1) << PQerrorMessage(listener.get());
    while (PGnotify* n = PQnotifies(listener.get())) {
      payloads.emplace_back(n->extra);
      PQfreemem(n);
    }
    if (payloads.empty()) {
      ASSERT_NO_THROW(wait_socket(listener.get(), POLLIN, deadline2, "a notification"));
    }
  }
  // Anything else queued behind it arrives with the next query's answer.
  EXPECT_EQ(query_value(listener.get(), "SELECT 1"), "1");
  while (PGnotify* n = PQnotifies(listener.get())) {
    payloads.emplace_back(n->extra);
    PQfreemem(n);
  }
  EXPECT_EQ(payloads, (std::vector<std::string>{"second"}));
}

TEST_F(ProxyClients, NoticesArriveUnchanged) {
  const std::string sql =
      "DO $$ BEGIN "
      "RAISE NOTICE 'clients notice %', 42 USING DETAIL = 'the detail', HINT = 'the hint'; "
      "RAISE WARNING 'clients warning' USING ERRCODE = '01007'; "
      "END $$";
  auto run = [&](PGconn* conn) {
    std::vector<Fields> notices;
    PQsetNoticeReceiver(conn, collect_notice, &notices);
    auto r = run_query(conn, sql);
    EXPECT_TRUE(r.ok()) << r.error;
    PQsetNoticeReceiver(
        conn, [](void*, const PGresult*) {}, nullptr);
    return notices;
  };
  auto proxied_conn = connect(env().conninfo(kMainListener, Who::kScramUser));
  ASSERT_TRUE(proxied_conn);
  auto proxied = run(proxied_conn.get());
  auto direct_conn = connect_or_throw(pg().conninfo(env().app_role, std::string(kAppPassword)));
  auto direct = run(direct_conn.get());

  ASSERT_EQ(proxied.size(), 2u);
  EXPECT_EQ(proxied[0][PG_DIAG_SEVERITY_NONLOCALIZED], "NOTICE");
  EXPECT_EQ(proxied[0][PG_DIAG_SQLSTATE], "00000");
  EXPECT_EQ(proxied[0][PG_DIAG_MESSAGE_PRIMARY], "clients notice 42");
  EXPECT_EQ(proxied[0][PG_DIAG_MESSAGE_DETAIL], "the detail");
  EXPECT_EQ(proxied[0][PG_DIAG_MESSAGE_HINT], "the hint");
  EXPECT_EQ(proxied[1][PG_DIAG_SEVERITY_NONLOCALIZED], "WARNING");
  EXPECT_EQ(proxied[1][PG_DIAG_SQLSTATE], "01007");
  EXPECT_EQ(proxied[1][PG_DIAG_MESSAGE_PRIMARY], "clients warning");
  // Every field, as PostgreSQL sends it to a direct client.
  ASSERT_EQ(direct.size(), proxied.size());
  for (std::size_t i = 0; i < direct.size(); ++i) {
    EXPECT_EQ(proxied[i], direct[i])
        << "proxied: " << describe(proxied[i]) << "\ndirect: " << describe(direct[i]);
  }
}

TEST_F(ProxyClients, MidSessionErrorsArriveUnchangedAndTheSessionGoesOn) {
  auto proxied = connect(env().conninfo(kMainListener, Who::kScramUser));
  ASSERT_TRUE(proxied);
  auto direct = connect_or_throw(pg().conninfo(env().app_role, std::string(kAppPassword)));

  struct Case {
    std::string sql;
    std::vector<std::string> params;
    std::string sqlstate;
  };
  const std::vector<Case> cases = {
      {"SELECT 1/0", {}, "22012"},
      {"SELECT 1/$1::int", {"0"}, "22012"},  // extended protocol
      {"SELECT * FROM clients_no_such_table", {}, "42P01"},
      {"SELECT 'abc'::int", {}, "22P02"},
      {"DO $$ BEGIN RAISE EXCEPTION 'clients custom %', 7 USING ERRCODE = 'P0042', "
       "DETAIL = 'custom detail', HINT = 'custom hint'; END $$",
       {},
       "P0042"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.sql);
    Fields p = error_fields(proxied.get(), c.sql, c.params);
    Fields d = error_fields(direct.get(), c.sql, c.params);
    EXPECT_EQ(p[PG_DIAG_SQLSTATE], c.sqlstate);
    EXPECT_EQ(p[PG_DIAG_SEVERITY_NONLOCALIZED], "ERROR");
    EXPECT_EQ(p, d) << "proxied: " << describe(p) << "\ndirect: " << describe(d);
    // The error ended the statement, not the session.
    EXPECT_EQ(PQstatus(proxied.get()), CONNECTION_OK);
    EXPECT_EQ(PQtransactionStatus(proxied.get()), PQTRANS_IDLE);
    EXPECT_EQ(query_value(proxied.get(), "SELECT 'after ' || $1", {c.sqlstate}),
              "after " + c.sqlstate);
  }
  Fields division = error_fields(proxied.get(), "SELECT 1/0");
  EXPECT_EQ(division[PG_DIAG_MESSAGE_PRIMARY], "division by zero");

  // In a transaction: the error aborts it, the server says so, ROLLBACK recovers.
  query_rows(proxied.get(), "BEGIN");
  EXPECT_EQ(error_fields(proxied.get(), "SELECT 1/0")[PG_DIAG_SQLSTATE], "22012");
  EXPECT_EQ(PQtransactionStatus(proxied.get()), PQTRANS_INERROR);
  EXPECT_EQ(error_fields(proxied.get(), "SELECT 1")[PG_DIAG_SQLSTATE], "25P02");
  query_rows(proxied.get(), "ROLLBACK");
  EXPECT_EQ(PQtransactionStatus(proxied.get()), PQTRANS_IDLE);
  EXPECT_EQ(query_value(proxied.get(), "SELECT current_user"), env().app_role);
}

}  // namespace
}  // namespace pgwarden::fixture
