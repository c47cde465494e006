// The configuration loader: every error carries file:line, all errors are collected,
// defaults, env expansion, relative paths, impossible combinations, warnings.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "config/loader.h"
#include "crypto/scram.h"

namespace pgwarden::config {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "pgwarden-config-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& content, mode_t mode = 0600) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    ::chmod(p.c_str(), mode);
    return p;
  }

 private:
  fs::path path_;
};

constexpr const char* kPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
constexpr const char* kKey = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

EnvLookup fake_env(std::map<std::string, std::string, std::less<>> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_.write("certs/server.crt", kPem, 0644);
    dir_.write("certs/server.key", kKey, 0600);
    dir_.write("certs/ca.crt", kPem, 0644);
    const auto v = crypto::make_scram_verifier("pw", 4096).value().to_string();
    dir_.write("users.txt", "\"alice\" \"" + v + "\"\n", 0600);
    options_.env = fake_env({{"CERTS", (dir_.path() / "certs").string()},
                             {"DB_PASSWORD", "s3cret"},
                             {"LISTEN_PORT", "7000"}});
  }

  LoadResult load(const std::string& text) {
    return load_config_file(dir_.write("pgwarden.toml", text, 0644), options_);
  }

  std::string file() const { return (dir_.path() / "pgwarden.toml").string(); }

  // The line numbers of all errors, in order.
  static std::vector<std::uint32_t> lines(const Diagnostics& d) {
    std::vector<std::uint32_t> out;
    for (const auto& e : d) {
      out.push_back(e.line);
    }
    return out;
  }

  static std::string dump(const Diagnostics& d) {
    std::string out;
    for (const auto& e : d) {
      out += e.to_string() + "\n";
    }
    return out;
  }

  // Exactly one error, on `line`, whose message contains `needle`.
  void expect_one_error(const LoadResult& r, std::uint32_t line, const std::string& needle) {
    ASSERT_FALSE(r.ok());
    ASSERT_EQ(r.errors.size(), 1u) << dump(r.errors);
    EXPECT_EQ(r.errors[0].file, file());
    EXPECT_EQ(r.errors[0].line, line) << dump(r.errors);
    EXPECT_NE(r.errors[0].message.find(needle), std::string::npos) << dump(r.errors);
    EXPECT_EQ(r.errors[0].to_string().rfind(file() + ":" + std::to_string(line) + ": ", 0), 0u);
  }

  TempDir dir_;
  LoadOptions options_;
};

// A small valid configuration; line numbers below refer to it.
constexpr const char* kValid = R"(# line 1
[[listener]]
name = "main"
listen = "127.0.0.1:6432"
tls = "require"
tls_cert = "${CERTS}/server.crt"
tls_key = "${CERTS}/server.key"
auth = ["scram"]
users_file = "users.txt"

[backend.app]
address = "db.internal:5432"
user = "app"
password = "${DB_PASSWORD}"
)";

TEST_F(LoaderTest, ValidConfigAndDefaults) {
  const auto r = load(kValid);
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  EXPECT_TRUE(r.warnings.empty()) << dump(r.warnings);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.workers, 0u);
  EXPECT_EQ(c.server.log_level, LogLevel::Info);
  EXPECT_EQ(c.server.log_format, LogFormat::Text);
  EXPECT_EQ(c.server.shutdown_grace, std::chrono::seconds(30));
  EXPECT_FALSE(c.server.admin_listen.has_value());
  EXPECT_FALSE(c.audit.path.has_value());
  EXPECT_EQ(c.audit.statements, AuditStatements::All);
  EXPECT_EQ(c.audit.literals, AuditLiterals::Redact);
  ASSERT_EQ(c.listeners.size(), 1u);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.backend, "app");  // the only backend is the default
  EXPECT_EQ(l.tls, ListenerTls::Require);
  EXPECT_EQ(l.client_cert, ClientCertMode::None);
  EXPECT_EQ(l.cert_identity, CertIdentity::Cn);
  EXPECT_EQ(l.max_connections, 10'000u);
  EXPECT_EQ(l.startup_timeout, std::chrono::seconds(10));
  EXPECT_EQ(l.idle_timeout, Duration{0});
  EXPECT_EQ(l.limits.max_startup_packet, 10'000u);
  EXPECT_EQ(l.limits.max_message_size, 1u << 30);
  EXPECT_EQ(l.limits.max_auth_message, 8u * 1024);
  EXPECT_EQ(l.auth_failure_limit, 10u);
  EXPECT_EQ(l.tailscale_socket, fs::path("/var/run/tailscale/tailscaled.sock"));
  EXPECT_EQ(*l.tls_cert, dir_.path() / "certs/server.crt");
  EXPECT_EQ(*l.users_file, dir_.path() / "users.txt");  // relative to the config file
  ASSERT_NE(l.users, nullptr);
  EXPECT_NE(l.users->find("alice"), nullptr);
  const Backend& b = *c.find_backend("app");
  EXPECT_EQ(b.address.port, 5432);
  EXPECT_EQ(b.tls, BackendTls::VerifyFull);
  EXPECT_EQ(b.tls_server_name, "db.internal");
  EXPECT_EQ(b.credentials, Credentials::Static);
  EXPECT_EQ(b.role_prefix, "pw_");
  EXPECT_EQ(b.role_ttl, std::chrono::hours(24));
  EXPECT_EQ(b.admin_database, "postgres");
  EXPECT_EQ(b.connect_timeout, std::chrono::seconds(10));
  ASSERT_TRUE(b.password.has_value());
  EXPECT_EQ(b.password->reveal(), "s3cret");
  EXPECT_TRUE(c.grants.empty());
}

TEST_F(LoaderTest, FullSchemaRoundTrip) {
  dir_.write("certs/clients-ca.crt", kPem, 0644);
  dir_.write("certs/sni.crt", kPem, 0644);
  dir_.write("certs/sni.key", kKey, 0600);
  dir_.write("jwks.json", "{\"keys\":[]}", 0644);
  dir_.write("admin.pw", "adm1n\r\nignored\n", 0600);
  const auto r = load(R"(
[server]
workers = 4
admin_listen = "[::1]:9930"
log_level = "debug"
log_format = "json"
shutdown_grace = "1m30s"

[audit]
path = "audit/../audit.jsonl"
statements = "ddl"
literals = "keep"

[cluster]
instance_id = 3
[[cluster.peers]]
instance_id = 4
address = "10.0.0.4:6432"

[[listener]]
name = "main"
listen = "[::1]:${LISTEN_PORT}"
backend = "prov"
tls = "allow"
tls_cert = "${CERTS}/server.crt"
tls_key = "${CERTS}/server.key"
tls_min_version = "1.3"
client_ca = "${CERTS}/clients-ca.crt"
cert_identity = "san-dns"
auth = ["cert", "tailscale", "token", "api_key", "scram"]
users_file = "users.txt"
max_connections = 7
startup_timeout = "2s"
idle_timeout = "1h"
max_startup_packet = "4KiB"
max_message_size = "64MiB"
max_auth_message = 16384
auth_failure_limit = 0
auth_failure_window = "10m"
tailscale_socket = "/run/ts.sock"

[listener.token]
jwks_file = "jwks.json"
issuer = "https://idp"
audience = "pg"
identity_claim = "email"
groups_claim = "roles"
leeway = "5s"

[[listener.api_key]]
name = "bot"
sha256 = "513C4C20FD830ADC74A46DA63006BB72609234A3A6C150D42325A0CD8A7D7BFD"
groups = ["ci"]

[[listener.sni]]
server_names = ["Reporting.Example.com", "*.example.org"]
cert = "${CERTS}/sni.crt"
key = "${CERTS}/sni.key"

[backend.prov]
address = "[2001:db8::1]"
tls = "verify-ca"
tls_ca = "${CERTS}/ca.crt"
credentials = "provision"
admin_user = "pw_admin"
admin_password_file = "admin.pw"
admin_database = "ops"
role_prefix = "px_"
role_ttl = "12h"
role_valid_for = "5m"
janitor_interval = "30s"
connect_timeout = "3s"
database = "pinned"

[[grant]]
identities = "group:eng"
backend = "prov"
databases = "*"
preset = "readwrite"
rules = ["r1", "r2"]
max_connections = 3
max_session_duration = "8h"

[[grant]]
identities = ["ops"]
backend = "pgwarden"
preset = "admin"

[rules.r1]
allow_statements = ["select", "update", "delete"]
deny_statements = ["ddl"]
require_where = true
deny_functions = ["PG_READ_FILE", "public.dblink"]
copy_program = true
max_statement_bytes = "1MiB"
[rules.r1.tables]
select = { allow = ["public.*"], deny = ["public.secrets"] }
all = { deny = ["pg_catalog.*"] }
[[rules.r1.mask]]
column = "email"
method = "partial"
[[rules.r1.mask]]
column = "ssn"
table = "hr.people"

[rules.r2]
require_where = ["delete"]
)");
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.workers, 4u);
  EXPECT_EQ(c.server.admin_listen->to_string(), "[::1]:9930");
  EXPECT_EQ(c.server.log_format, LogFormat::Json);
  EXPECT_EQ(c.server.shutdown_grace, std::chrono::seconds(90));
  EXPECT_EQ(*c.audit.path, dir_.path() / "audit.jsonl");
  EXPECT_EQ(c.audit.statements, AuditStatements::Ddl);
  EXPECT_EQ(c.cluster.instance_id, 3u);
  ASSERT_EQ(c.cluster.peers.size(), 1u);
  EXPECT_EQ(c.cluster.peers[0].address.port, 6432);
  const Listener& l = c.listeners[0];
  EXPECT_EQ(l.listen.host, "::1");
  EXPECT_EQ(l.listen.port, 7000);
  EXPECT_EQ(l.client_cert, ClientCertMode::Optional);  // default once client_ca is set
  EXPECT_EQ(l.cert_identity, CertIdentity::SanDns);
  EXPECT_EQ(l.auth.size(), 5u);
  EXPECT_EQ(l.auth[1], AuthMethod::Tailscale);
  EXPECT_EQ(l.limits.max_startup_packet, 4096u);
  EXPECT_EQ(l.limits.max_message_size, 64u << 20);
  EXPECT_EQ(l.limits.max_auth_message, 16384u);
  EXPECT_EQ(l.auth_failure_limit, 0u);
  ASSERT_TRUE(l.token.has_value());
  EXPECT_EQ(l.token->algorithms,
            (std::vector<TokenAlgorithm>{TokenAlgorithm::Rs256, TokenAlgorithm::Es256,
                                         TokenAlgorithm::EdDsa}));
  EXPECT_EQ(l.token->audience, std::vector<std::string>{"pg"});
  EXPECT_EQ(l.token->identity_claim, "email");
  EXPECT_EQ(l.token->leeway, std::chrono::seconds(5));
  ASSERT_EQ(l.api_keys.size(), 1u);
  EXPECT_EQ(l.api_keys[0].sha256[0], 0x51);
  EXPECT_EQ(l.api_keys[0].sha256[31], 0xfd);
  ASSERT_EQ(l.sni.size(), 1u);
  EXPECT_EQ(l.sni[0].server_names[0], "reporting.example.com");
  const Backend& b = *c.find_backend("prov");
  EXPECT_EQ(b.address.host, "2001:db8::1");
  EXPECT_EQ(b.address.port, 5432);
  EXPECT_EQ(b.tls, BackendTls::VerifyCa);
  EXPECT_EQ(b.admin_password->reveal(), "adm1n");  // first line, CR LF stripped
  EXPECT_EQ(b.role_prefix, "px_");
  EXPECT_EQ(b.database, "pinned");
  ASSERT_EQ(c.grants.size(), 2u);
  EXPECT_EQ(c.grants[0].identities, std::vector<std::string>{"group:eng"});
  EXPECT_EQ(c.grants[0].databases, std::vector<std::string>{"*"});
  EXPECT_EQ(c.grants[0].preset, Preset::Readwrite);
  EXPECT_EQ(*c.grants[0].max_session_duration, std::chrono::hours(8));
  EXPECT_EQ(c.grants[1].databases, std::vector<std::string>{"pgwarden"});
  const RuleSet& r1 = *c.find_rules("r1");
  EXPECT_EQ(r1.require_where,
            (std::vector<StatementKind>{StatementKind::Update, StatementKind::Delete}));
  EXPECT_EQ(r1.deny_functions, (std::vector<std::string>{"pg_read_file", "public.dblink"}));
  EXPECT_TRUE(r1.copy_program);
  EXPECT_EQ(*r1.max_statement_bytes, 1u << 20);
  EXPECT_EQ(r1.tables.at(TableOperation::Select).deny, std::vector<std::string>{"public.secrets"});
  EXPECT_EQ(r1.tables.at(TableOperation::All).deny, std::vector<std::string>{"pg_catalog.*"});
  ASSERT_EQ(r1.masks.size(), 2u);
  EXPECT_EQ(r1.masks[0].method, MaskMethod::Partial);
  EXPECT_EQ(r1.masks[1].method, MaskMethod::Redact);
  EXPECT_EQ(*r1.masks[1].table, "hr.people");
  EXPECT_EQ(c.find_rules("r2")->require_where, std::vector<StatementKind>{StatementKind::Delete});
}

TEST_F(LoaderTest, UnknownKeyAtTopLevel) {
  expect_one_error(load("bogus = 1\n" + std::string(kValid)), 1, "unknown key \"bogus\"");
}

TEST_F(LoaderTest, UnknownKeyDeepInside) {
  const auto r = load(std::string(kValid) +
                      "[rules.x]\n"                                     // 15
                      "[rules.x.tables]\n"                              // 16
                      "select = { allow = [\"a\"], alow = [\"b\"] }\n"  // 17
                      "[[grant]]\nidentities=[\"*\"]\nbackend=\"app\"\ndatabases=[\"*\"]\n"
                      "rules=\"x\"\n");
  expect_one_error(r, 17, "unknown key \"rules.x.tables.select.alow\"");
}

TEST_F(LoaderTest, UnknownKeyInListener) {
  std::string text = kValid;
  text.replace(text.find("auth = "), 0, "tls_mode = \"x\"\n");
  expect_one_error(load(text), 8, "unknown key \"listener[0].tls_mode\"");
}

TEST_F(LoaderTest, WrongType) {
  std::string text = kValid;
  text.replace(text.find("\"127.0.0.1:6432\""), 16, "6432");
  expect_one_error(load(text), 4, "listener[0].listen: expected a string, got an integer");
}

TEST_F(LoaderTest, DurationWithoutUnit) {
  expect_one_error(load(std::string(kValid) + "[server]\nshutdown_grace = 30\n"), 16,
                   "needs a unit");
}

TEST_F(LoaderTest, BadEnumListsAllowedValues) {
  std::string text = kValid;
  text.replace(text.find("tls = \"require\""), 15, "tls = \"required\"");
  expect_one_error(load(text), 5, "expected one of \"disable\", \"allow\", \"require\"");
}

TEST_F(LoaderTest, UnsetEnvironmentVariable) {
  std::string text = kValid;
  text.replace(text.find("${DB_PASSWORD}"), 14, "${NO_SUCH_VAR}");
  expect_one_error(load(text), 14, "environment variable NO_SUCH_VAR is not set");
}

TEST_F(LoaderTest, MissingCertificate) {
  fs::remove(dir_.path() / "certs/server.crt");
  expect_one_error(load(kValid), 6, "No such file or directory");
}

TEST_F(LoaderTest, CertificateIsNotPem) {
  dir_.write("certs/server.crt", "garbage", 0644);
  expect_one_error(load(kValid), 6, "is not a PEM file");
}

TEST_F(LoaderTest, DeviceFileIsRefused) {
  std::string text = kValid;
  text.replace(text.find("users.txt"), 9, "/dev/zero");
  expect_one_error(load(text), 9, "is not a regular file");
}

TEST_F(LoaderTest, CertAuthWithoutClientCa) {
  std::string text = kValid;
  text.replace(text.find("auth = [\"scram\"]"), 16, "auth = [\"cert\", \"scram\"]");
  expect_one_error(load(text), 8, "\"cert\" needs client_ca");
}

TEST_F(LoaderTest, SyntaxErrorHasLine) {
  const auto r = load("[server]\nworkers = 1\nlog_level = \"info\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3u);
  EXPECT_NE(r.errors[0].message.find("TOML syntax error"), std::string::npos);
}

TEST_F(LoaderTest, DuplicateKeyIsASyntaxError) {
  const auto r = load("[server]\nworkers = 1\nworkers = 2\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 3u);
}

TEST_F(LoaderTest, SeveralProblemsAreAllReported) {
  const auto r = load(R"([server]
workers = "four"
log_level = "loud"
bogus = 1

[[listener]]
name = "a"
listen = "[::1]:6432"
tls_cert = "/nonexistent/server.crt"
tls_key = "${NOPE}"
auth = ["cert", "token"]

[backend.app]
address = "db:99999"

[[grant]]
identities = ["x"]
backend = "nope"
databases = ["*"]
rules = "missing"
)");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(lines(r.errors), (std::vector<std::uint32_t>{2, 3, 4, 9, 10, 11, 11, 13, 14, 18, 20}))
      << dump(r.errors);
  for (const auto& e : r.errors) {
    EXPECT_EQ(e.file, file());
  }
}

TEST_F(LoaderTest, ImpossibleCombinations) {
  struct Case {
    const char* name;
    std::string text;
    std::string needle;
  };
  const std::string listener_head = "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:1\"\n";
  const std::string tls = "tls_cert = \"${CERTS}/server.crt\"\ntls_key = \"${CERTS}/server.key\"\n";
  const std::string backend = "[backend.app]\naddress = \"db:5432\"\nuser = \"u\"\n";
  const std::vector<Case> cases = {
      {"client_cert without client_ca",
       listener_head + tls + "auth = [\"trust\"]\nclient_cert = \"require\"\n" + backend,
       "client_cert is set but client_ca is not"},
      {"token over plaintext",
       listener_head + "tls = \"disable\"\nauth = [\"token\"]\n" + "[listener.token]\nsecret = \"" +
           std::string(40, 'k') + "\"\n" + backend,
       "not allowed with tls = \"disable\""},
      {"api_key over plaintext",
       listener_head +
           "tls = \"disable\"\nauth = [\"api_key\"]\n[[listener.api_key]]\nname = "
           "\"k\"\nsha256 = \"" +
           std::string(64, 'a') + "\"\n" + backend,
       "not allowed with tls = \"disable\""},
      {"tls require without cert", listener_head + "auth = [\"trust\"]\n" + backend,
       "needs tls_cert and tls_key"},
      {"tls allow without cert", listener_head + "tls = \"allow\"\nauth = [\"trust\"]\n" + backend,
       "needs tls_cert and tls_key"},
      {"scram without users_file", listener_head + tls + "auth = [\"scram\"]\n" + backend,
       "\"scram\" needs users_file"},
      {"unknown listener backend",
       listener_head + tls + "auth = [\"trust\"]\nbackend = \"other\"\n" + backend,
       "unknown backend \"other\""},
      {"static without user",
       listener_head + tls + "auth = [\"trust\"]\n[backend.app]\naddress = \"db\"\n",
       "needs \"user\""},
      {"provision without admin_user",
       listener_head + tls +
           "auth = [\"trust\"]\n[backend.app]\naddress = \"db\"\ncredentials = \"provision\"\n",
       "needs \"admin_user\""},
      {"passthrough backend with scram listener",
       listener_head + tls +
           "auth = [\"trust\"]\n[backend.app]\naddress = \"db\"\ncredentials = "
           "\"passthrough\"\n",
       "needs auth = [\"passthrough\"]"},
      {"passthrough listener with static backend",
       listener_head + tls + "auth = [\"passthrough\"]\n" + backend,
       "to use credentials = \"passthrough\""},
      {"client_cert require with tls allow",
       listener_head + "tls = \"allow\"\n" + tls +
           "client_ca = \"${CERTS}/ca.crt\"\nclient_cert = \"require\"\nauth = [\"cert\"]\n" +
           backend,
       "bypass"},
      {"methods after trust", listener_head + tls + "auth = [\"trust\", \"scram\"]\n" + backend,
       "never be used"},
      {"short HS256 secret",
       listener_head + tls + "auth = [\"token\"]\n[listener.token]\nsecret = \"short\"\n" + backend,
       "at least 32 bytes"},
      {"HS256 with jwks",
       listener_head + tls +
           "auth = [\"token\"]\n[listener.token]\njwks_file = \"users.txt\"\nalgorithms = "
           "[\"HS256\"]\n" +
           backend,
       "HS256 needs secret"},
      {"password and password_file",
       listener_head + tls + "auth = [\"trust\"]\n" + backend +
           "password = \"a\"\npassword_file = \"users.txt\"\n",
       "not both"},
      {"grant rules unknown",
       listener_head + tls + "auth = [\"trust\"]\n" + backend +
           "[[grant]]\nidentities=[\"*\"]\nbackend=\"app\"\ndatabases=[\"*\"]\nrules=[\"nope\"]\n",
       "unknown rule set \"nope\""},
      {"role_prefix pg_",
       listener_head + tls +
           "auth = [\"trust\"]\n[backend.app]\naddress = \"db\"\ncredentials = "
           "\"provision\"\nadmin_user = \"a\"\nrole_prefix = \"pg_x\"\n",
       "reserved by PostgreSQL"},
      {"single [listener] table", "[listener]\nname = \"x\"\n" + backend, "use [[listener]]"},
      {"allow and deny same kind",
       listener_head + tls + "auth = [\"trust\"]\n" + backend +
           "[rules.r]\nallow_statements = [\"select\"]\ndeny_statements = [\"select\"]\n",
       "in both allow_statements and deny_statements"},
      {"require_where on select",
       listener_head + tls + "auth = [\"trust\"]\n" + backend +
           "[rules.r]\nrequire_where = [\"select\"]\n",
       "has no WHERE clause"},
      {"backend named pgwarden",
       listener_head + tls +
           "auth = [\"trust\"]\n[backend.pgwarden]\naddress = \"db\"\nuser = \"u\"\n",
       "reserved for the admin console"},
      {"auth message above message size",
       listener_head + tls +
           "auth = [\"trust\"]\nmax_message_size = \"8KiB\"\nmax_auth_message = "
           "\"16KiB\"\n" +
           backend,
       "cannot exceed max_message_size"},
      {"no backend", listener_head + tls + "auth = [\"trust\"]\n", "no backend is defined"},
      {"cluster peer with own id",
       listener_head + tls + "auth = [\"trust\"]\n" + backend +
           "[cluster]\ninstance_id = 1\npeers = [{ instance_id = 1, address = \"h:1\" }]\n",
       "own cluster.instance_id"},
  };
  for (const auto& c : cases) {
    const auto r = load(c.text);
    EXPECT_FALSE(r.ok()) << c.name;
    bool found = false;
    for (const auto& e : r.errors) {
      EXPECT_GT(e.line, 0u) << c.name << ": " << e.message;
      found = found || e.message.find(c.needle) != std::string::npos;
    }
    EXPECT_TRUE(found) << c.name << "\n" << dump(r.errors);
  }
}

TEST_F(LoaderTest, DuplicateListenerNames) {
  const std::string l =
      "[[listener]]\nname = \"x\"\nlisten = \"127.0.0.1:PORT\"\ntls = "
      "\"disable\"\nauth = [\"trust\"]\n";
  std::string a = l;
  a.replace(a.find("PORT"), 4, "1");
  std::string b = l;
  b.replace(b.find("PORT"), 4, "2");
  const auto r = load(a + b + "[backend.app]\naddress = \"db\"\nuser = \"u\"\n");
  expect_one_error(r, 6, "duplicate listener name \"x\" (first on line 1)");
}

TEST_F(LoaderTest, BackendRequiredWhenSeveral) {
  const auto r = load(
      "[[listener]]\nname = \"x\"\nlisten = \"127.0.0.1:1\"\ntls = \"disable\"\nauth = "
      "[\"trust\"]\n[backend.a]\naddress = \"db\"\nuser = \"u\"\n[backend.b]\naddress = "
      "\"db\"\nuser = \"u\"\n");
  expect_one_error(r, 1, "missing required key \"backend\"");
}

TEST_F(LoaderTest, GrantOnAdminConsoleIsAllowed) {
  const auto r = load(std::string(kValid) +
                      "[[grant]]\nidentities = [\"alice\"]\nbackend = \"pgwarden\"\npreset = "
                      "\"admin\"\n");
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  EXPECT_EQ(r.config->grants[0].backend, "pgwarden");
}

TEST_F(LoaderTest, TrustOnNonLoopbackIsAWarning) {
  const auto r = load(
      "[[listener]]\nname = \"x\"\nlisten = \"0.0.0.0:6432\"\ntls = \"disable\"\nauth = "
      "[\"trust\"]\n[backend.a]\naddress = \"db\"\nuser = \"u\"\n");
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << dump(r.warnings);
  EXPECT_EQ(r.warnings[0].line, 5u);
  EXPECT_NE(r.warnings[0].message.find("\"trust\" on non-loopback"), std::string::npos);
  EXPECT_NE(r.warnings[0].to_warning_string().find(":5: warning: "), std::string::npos);

  const auto loop = load(
      "[[listener]]\nname = \"x\"\nlisten = \"[::1]:6432\"\ntls = \"disable\"\nauth = "
      "[\"trust\"]\n[backend.a]\naddress = \"db\"\nuser = \"u\"\n");
  ASSERT_TRUE(loop.ok());
  EXPECT_TRUE(loop.warnings.empty()) << dump(loop.warnings);
}

TEST_F(LoaderTest, UsersFileErrorsPointIntoTheUsersFile) {
  dir_.write("users.txt", "# comment\n\"alice\" \"md5deadbeef\"\n", 0600);
  const auto r = load(kValid);
  ASSERT_EQ(r.errors.size(), 1u) << dump(r.errors);
  EXPECT_EQ(r.errors[0].file, (dir_.path() / "users.txt").string());
  EXPECT_EQ(r.errors[0].line, 2u);
  EXPECT_NE(r.errors[0].message.find("MD5"), std::string::npos);
}

TEST_F(LoaderTest, WorldReadableUsersFileWarns) {
  ::chmod((dir_.path() / "users.txt").c_str(), 0644);
  const auto r = load(kValid);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].message.find("accessible by every user"), std::string::npos);
}

// A secret written in the configuration file is exposed when the file is (L6), exactly as a
// users_file or tls_key is; ${ENV} references keep the secret out of the file.
TEST_F(LoaderTest, InlineSecretInWorldReadableConfigWarns) {
  std::string text = kValid;
  const auto env_line = text.find("password = \"${DB_PASSWORD}\"");
  ASSERT_NE(env_line, std::string::npos);
  text.replace(env_line, std::string("password = \"${DB_PASSWORD}\"").size(),
               "password = \"inline-s3cret\"");
  const auto r = load_config_file(dir_.write("pgwarden.toml", text, 0644), options_);
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  ASSERT_EQ(r.warnings.size(), 1u) << dump(r.warnings);
  EXPECT_EQ(r.warnings[0].line, 14u);
  EXPECT_NE(r.warnings[0].message.find("backend.app.password (inline secret)"), std::string::npos)
      << r.warnings[0].message;
  EXPECT_NE(r.warnings[0].message.find("accessible by every user (chmod o-rwx)"), std::string::npos)
      << r.warnings[0].message;
  EXPECT_EQ(r.warnings[0].message.find("inline-s3cret"), std::string::npos);

  // Others may also not write it (they could change the secret, or anything else).
  const auto writable = load_config_file(dir_.write("pgwarden.toml", text, 0602), options_);
  EXPECT_EQ(writable.warnings.size(), 1u) << dump(writable.warnings);
  // Private: no warning.
  const auto private_file = load_config_file(dir_.write("pgwarden.toml", text, 0600), options_);
  EXPECT_TRUE(private_file.warnings.empty()) << dump(private_file.warnings);
  // Text without a file has no permissions to judge.
  const auto from_text = load_config_text(text, "inline.toml", dir_.path(), options_);
  EXPECT_TRUE(from_text.warnings.empty()) << dump(from_text.warnings);
}

TEST_F(LoaderTest, OnlyLiteralSecretTextCountsAsInline) {
  const std::string head = R"([[listener]]
name = "main"
listen = "127.0.0.1:6432"
tls = "require"
tls_cert = "${CERTS}/server.crt"
tls_key = "${CERTS}/server.key"
auth = ["scram"]
users_file = "users.txt"

[backend.app]
address = "db.internal:5432"
user = "app"
)";
  struct Case {
    std::string value;
    bool inline_secret;
  };
  for (const auto& c : std::vector<Case>{{"${DB_PASSWORD}", false},
                                         {"${DB_PASSWORD}${LISTEN_PORT}", false},
                                         {"x${DB_PASSWORD}", true},
                                         {"${DB_PASSWORD}$$", true},
                                         {"plain", true}}) {
    const auto r = load(head + "password = \"" + c.value + "\"\n");  // load() writes 0644
    ASSERT_TRUE(r.ok()) << c.value << dump(r.errors);
    EXPECT_EQ(r.warnings.size(), c.inline_secret ? 1u : 0u) << c.value << dump(r.warnings);
  }
}

TEST_F(LoaderTest, EveryInlineSecretKeyWarns) {
  dir_.write("admin.pw", "admin-secret\n", 0600);
  const auto r = load(R"([[listener]]
name = "main"
listen = "127.0.0.1:6432"
tls_cert = "${CERTS}/server.crt"
tls_key = "${CERTS}/server.key"
auth = ["token"]

[listener.token]
secret = "0123456789abcdef0123456789abcdef-inline"

[backend.app]
address = "db.internal:5432"
credentials = "provision"
admin_user = "pw_admin"
admin_password = "inline-admin"
)");
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  ASSERT_EQ(r.warnings.size(), 2u) << dump(r.warnings);
  EXPECT_EQ(r.warnings[0].line, 9u);
  EXPECT_NE(r.warnings[0].message.find("listener[0].token.secret (inline secret)"),
            std::string::npos)
      << dump(r.warnings);
  EXPECT_EQ(r.warnings[1].line, 15u);
  EXPECT_NE(r.warnings[1].message.find("backend.app.admin_password (inline secret)"),
            std::string::npos)
      << dump(r.warnings);
}

TEST_F(LoaderTest, SecretsNeverAppearInDiagnostics) {
  // Even an error on the same key must not echo the expanded value.
  std::string text = kValid;
  text += "admin_password = \"${DB_PASSWORD}\"\n";  // a warning: unused with static
  text += "password_file = \"users.txt\"\n";        // an error: both password and file
  const auto r = load(text);
  for (const auto* d : {&r.errors, &r.warnings}) {
    for (const auto& e : *d) {
      EXPECT_EQ(e.message.find("s3cret"), std::string::npos) << e.message;
    }
  }
  EXPECT_FALSE(r.ok());
}

TEST_F(LoaderTest, TextLoadingWithoutFileChecks) {
  LoadOptions o = options_;
  o.check_files = false;
  std::string text = kValid;
  text.replace(text.find("${CERTS}/server.crt"), 19, "/does/not/exist.crt");
  const auto r = load_config_text(text, "inline.toml", "/base", o);
  ASSERT_TRUE(r.ok()) << dump(r.errors);
  EXPECT_EQ(r.config->listeners[0].users_file, fs::path("/base/users.txt"));
  EXPECT_EQ(r.config->listeners[0].users, nullptr);
  EXPECT_EQ(r.config->source, fs::path("inline.toml"));
}

TEST_F(LoaderTest, MissingConfigFile) {
  const auto r = load_config_file(dir_.path() / "absent.toml", options_);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].to_string().find("absent.toml: cannot open"), std::string::npos);
}

TEST_F(LoaderTest, EmptyDocumentNeedsListenerAndBackend) {
  const auto r = load("");
  EXPECT_EQ(r.errors.size(), 2u) << dump(r.errors);
}

TEST_F(LoaderTest, OutOfRangeIntegers) {
  expect_one_error(load(std::string(kValid) + "[server]\nworkers = -1\n"), 16,
                   "-1 is out of range (0..1024)");
}

TEST_F(LoaderTest, LoadingIsDeterministic) {
  const std::string text = std::string(kValid) + "x = 1\n[server]\ny = 2\nworkers = true\n";
  const auto a = load(text);
  const auto b = load(text);
  EXPECT_EQ(a.errors, b.errors);
  EXPECT_EQ(a.warnings, b.warnings);
  EXPECT_EQ(a.errors.size(), 3u);
}

}  // namespace
}  // namespace pgwarden::config
