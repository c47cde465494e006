// The validated, immutable configuration of one pgwarden process. A Config is produced only
// by the loader (config/loader.h) after every check has passed, and is then shared as
// std::shared_ptr<const Config>; a reload builds a fresh Config and swaps the pointer, so
// nothing here is ever mutated after loading. Every field has its effective value: defaults
// are applied, `${VAR}` references are expanded, relative paths are made absolute (against
// the directory of the configuration file), and cross-references (listener -> backend,
// grant -> backend/rules) are known to resolve. Secrets are held in Secret, which wipes
// them. docs/configuration.md documents every key.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/secret.h"
#include "config/users_file.h"
#include "config/values.h"
#include "wire/limits.h"

namespace pgwarden::config {

// ---- Enumerations (each has to_string() giving the spelling used in the file) ----

enum class LogLevel : std::uint8_t { Trace, Debug, Info, Warn, Error, Critical, Off };
enum class LogFormat : std::uint8_t { Text, Json };
enum class AuditStatements : std::uint8_t { None, Ddl, Write, All };
enum class AuditLiterals : std::uint8_t { Redact, Keep };
enum class ListenerTls : std::uint8_t { Disable, Allow, Require };
enum class TlsVersion : std::uint8_t { Tls12, Tls13 };
// None: no client_ca, client certificates are not requested.
enum class ClientCertMode : std::uint8_t { None, Optional, Require };
enum class CertIdentity : std::uint8_t { Cn, SanEmail, SanDns };
enum class AuthMethod : std::uint8_t { Trust, Scram, Cert, Token, ApiKey, Tailscale, Passthrough };
enum class TokenAlgorithm : std::uint8_t { Rs256, Es256, EdDsa, Hs256 };
enum class BackendTls : std::uint8_t { VerifyFull, VerifyCa, Disable };
enum class Credentials : std::uint8_t { Static, Provision, Passthrough };
enum class Preset : std::uint8_t { Readonly, Readwrite, Admin };
// Statement kinds for [rules.NAME] allow_statements / deny_statements / require_where.
enum class StatementKind : std::uint8_t {
  Select,
  Insert,
  Update,
  Delete,
  Merge,
  Copy,
  Ddl,
  Drop,
  Truncate,
  Grant,
  Set,
  Show,
  Call,
  Do,
  Transaction,
  Explain,
  Prepare,
  Execute,
  Deallocate,
  Cursor,
  Listen,
  Notify,
  Lock,
  Vacuum,
  Analyze,
  Maintenance,
  Role,
  AlterSystem,
  Load,
  Discard,
  Reset,
  Comment,
  Other,
};
// Operations that [rules.NAME.tables] lists can be given for; All applies to every one.
enum class TableOperation : std::uint8_t {
  All,
  Select,
  Insert,
  Update,
  Delete,
  Merge,
  Copy,
  Truncate
};
enum class MaskMethod : std::uint8_t { Redact, Partial, Hash, Null };

std::string_view to_string(LogLevel);
std::string_view to_string(LogFormat);
std::string_view to_string(AuditStatements);
std::string_view to_string(AuditLiterals);
std::string_view to_string(ListenerTls);
std::string_view to_string(TlsVersion);
std::string_view to_string(ClientCertMode);
std::string_view to_string(CertIdentity);
std::string_view to_string(AuthMethod);
std::string_view to_string(TokenAlgorithm);
std::string_view to_string(BackendTls);
std::string_view to_string(Credentials);
std::string_view to_string(Preset);
std::string_view to_string(StatementKind);
std::string_view to_string(TableOperation);
std::string_view to_string(MaskMethod);

// ---- Defaults and bounds (named, documented in docs/configuration.md) ----

inline constexpr std::uint32_t kDefaultWorkers = 0;  // one per CPU core
inline constexpr std::uint32_t kMaxWorkers = 1024;
inline constexpr Duration kDefaultShutdownGrace = std::chrono::seconds(30);
inline constexpr std::uint32_t kDefaultMaxConnections = 10'000;
inline constexpr std::uint32_t kMaxMaxConnections = 1'000'000;
inline constexpr Duration kDefaultStartupTimeout = std::chrono::seconds(10);
inline constexpr Duration kDefaultIdleTimeout = Duration{0};  // 0 = no idle timeout
// A session idle inside a transaction holds its locks and snapshot (blocking vacuum and DDL)
// for as long as it stays: a proxy in front of many clients bounds that by default.
inline constexpr Duration kDefaultIdleInTransactionTimeout = std::chrono::hours(1);
inline constexpr std::uint32_t kMinStartupPacketLimit = 1024;
inline constexpr std::uint32_t kMaxStartupPacketLimit = 65'536;
inline constexpr std::uint32_t kMinMessageLimit = 8 * 1024;
inline constexpr std::uint32_t kMinAuthMessageLimit = 1024;
inline constexpr std::uint32_t kMaxAuthMessageLimit = 1024 * 1024;
inline constexpr std::uint32_t kDefaultAuthFailureLimit = 10;  // per client address
inline constexpr Duration kDefaultAuthFailureWindow = std::chrono::seconds(60);
inline constexpr std::string_view kDefaultTailscaleSocket = "/var/run/tailscale/tailscaled.sock";
inline constexpr std::string_view kDefaultIdentityClaim = "sub";
inline constexpr std::string_view kDefaultGroupsClaim = "groups";
inline constexpr Duration kDefaultTokenLeeway = std::chrono::seconds(30);
inline constexpr Duration kMaxTokenLeeway = std::chrono::minutes(10);
// RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
inline constexpr std::size_t kMinHs256SecretBytes = 32;
inline constexpr std::uint16_t kDefaultPostgresPort = 5432;
inline constexpr std::string_view kDefaultRolePrefix = "pw_";
inline constexpr std::size_t kMaxRolePrefixBytes = 20;
inline constexpr Duration kDefaultRoleTtl = std::chrono::hours(24);
inline constexpr Duration kDefaultRoleValidFor = std::chrono::minutes(15);
inline constexpr Duration kDefaultJanitorInterval = std::chrono::minutes(10);
inline constexpr std::string_view kDefaultAdminDatabase = "postgres";
inline constexpr Duration kDefaultConnectTimeout = std::chrono::seconds(10);
inline constexpr std::uint32_t kMaxInstanceId = 255;
// The grant backend that names the built-in admin console, and so no real backend may use.
inline constexpr std::string_view kAdminConsoleBackend = "pgwarden";
// PostgreSQL identifiers (role, database names) are at most NAMEDATALEN - 1 bytes.
inline constexpr std::size_t kMaxIdentifierBytes = 63;

// ---- Sections ----

struct ServerConfig {
  std::uint32_t workers = kDefaultWorkers;
  std::optional<HostPort> admin_listen;  // unset: no metrics/health HTTP endpoint
  LogLevel log_level = LogLevel::Info;
  LogFormat log_format = LogFormat::Text;
  Duration shutdown_grace = kDefaultShutdownGrace;
};

struct AuditConfig {
  // Unset: no audit log. "-" means standard output; otherwise an absolute path.
  std::optional<std::filesystem::path> path;
  AuditStatements statements = AuditStatements::All;
  AuditLiterals literals = AuditLiterals::Redact;
};

struct ClusterPeer {
  std::uint32_t instance_id = 0;
  HostPort address;
};

struct ClusterConfig {
  std::uint32_t instance_id = 0;
  std::vector<ClusterPeer> peers;
};

struct SniCertificate {
  std::vector<std::string> server_names;  // exact names or "*.example.com"
  std::filesystem::path cert;
  std::filesystem::path key;
};

struct TokenConfig {
  // Exactly one key source: a JWKS file (asymmetric algorithms) or an HS256 secret.
  std::optional<std::filesystem::path> jwks_file;
  std::optional<Secret> secret;
  std::optional<std::filesystem::path> secret_file;  // where `secret` was read from, if so
  std::vector<TokenAlgorithm> algorithms;
  std::optional<std::string> issuer;
  std::vector<std::string> audience;  // empty: `aud` is not checked
  std::string identity_claim{kDefaultIdentityClaim};
  std::string groups_claim{kDefaultGroupsClaim};
  Duration leeway = kDefaultTokenLeeway;
};

struct ApiKey {
  std::string name;
  std::array<std::uint8_t, 32> sha256{};  // SHA-256 of the key as the client sends it
  std::vector<std::string> groups;
};

struct ListenerLimits {
  std::uint32_t max_startup_packet = wire::kMaxStartupPacket;
  std::uint32_t max_message_size = wire::kMaxMessage;
  std::uint32_t max_auth_message = wire::kMaxAuthMessage;
};

struct Listener {
  std::string name;
  HostPort listen;
  std::string backend;  // always names an entry of Config::backends
  ListenerTls tls = ListenerTls::Require;
  std::optional<std::filesystem::path> tls_cert;
  std::optional<std::filesystem::path> tls_key;
  TlsVersion tls_min_version = TlsVersion::Tls12;
  std::vector<SniCertificate> sni;
  std::optional<std::filesystem::path> client_ca;
  ClientCertMode client_cert = ClientCertMode::None;
  CertIdentity cert_identity = CertIdentity::Cn;
  std::vector<AuthMethod> auth;  // non-empty, no duplicates, in order of precedence
  std::optional<std::filesystem::path> users_file;
  // The parsed users file; null when the loader was told not to read files.
  std::shared_ptr<const UsersFile> users;
  std::uint32_t max_connections = kDefaultMaxConnections;
  Duration startup_timeout = kDefaultStartupTimeout;
  Duration idle_timeout = kDefaultIdleTimeout;  // 0: none
  // Idle while a transaction is open (ReadyForQuery 'T' or 'E'); 0: none. FATAL 25P03.
  Duration idle_in_transaction_timeout = kDefaultIdleInTransactionTimeout;
  ListenerLimits limits;
  std::uint32_t auth_failure_limit = kDefaultAuthFailureLimit;  // 0: no rate limit
  Duration auth_failure_window = kDefaultAuthFailureWindow;
  std::optional<TokenConfig> token;
  std::vector<ApiKey> api_keys;
  std::filesystem::path tailscale_socket{std::string(kDefaultTailscaleSocket)};

  bool has_auth(AuthMethod m) const;
};

struct Backend {
  std::string name;
  HostPort address;
  BackendTls tls = BackendTls::VerifyFull;
  std::optional<std::filesystem::path> tls_ca;  // unset: the system trust store
  std::string tls_server_name;                  // default: host of address
  std::optional<std::filesystem::path> tls_client_cert;
  std::optional<std::filesystem::path> tls_client_key;
  Credentials credentials = Credentials::Static;
  // static
  std::optional<std::string> user;
  std::optional<Secret> password;  // from `password` or the first line of `password_file`
  std::optional<std::filesystem::path> password_file;
  std::optional<std::string> database;  // pins the upstream database
  // provision
  std::optional<std::string> admin_user;
  std::optional<Secret> admin_password;
  std::optional<std::filesystem::path> admin_password_file;
  std::string admin_database{kDefaultAdminDatabase};
  std::string role_prefix{kDefaultRolePrefix};
  Duration role_ttl = kDefaultRoleTtl;
  Duration role_valid_for = kDefaultRoleValidFor;
  Duration janitor_interval = kDefaultJanitorInterval;
  Duration connect_timeout = kDefaultConnectTimeout;
};

struct Grant {
  std::vector<std::string> identities;  // "name", "group:G", "tag:T" or "*"
  std::string backend;                  // a backend name or kAdminConsoleBackend
  std::vector<std::string> databases;   // names or "*"
  Preset preset = Preset::Readonly;
  std::vector<std::string> rules;  // names of Config::rules entries
  std::optional<std::uint32_t> max_connections;
  std::optional<Duration> max_session_duration;
  std::uint32_t line = 0;  // where the grant starts, for messages
};

struct TableAccess {
  std::vector<std::string> allow;  // patterns: "table", "schema.table", "schema.*", "*"
  std::vector<std::string> deny;
};

struct Mask {
  std::string column;
  std::optional<std::string> table;  // pattern as in TableAccess
  MaskMethod method = MaskMethod::Redact;
};

struct RuleSet {
  std::string name;
  std::vector<StatementKind> allow_statements;  // empty: every kind not denied
  std::vector<StatementKind> deny_statements;
  std::vector<StatementKind> require_where;  // subset of update, delete
  std::map<TableOperation, TableAccess> tables;
  std::vector<std::string> deny_functions;  // "name" or "schema.name", lower case
  bool copy_program = false;
  std::optional<std::uint64_t> max_statement_bytes;
  std::vector<Mask> masks;
};

struct Config {
  std::filesystem::path source;  // the configuration file (or the display name)
  ServerConfig server;
  AuditConfig audit;
  ClusterConfig cluster;
  std::vector<Listener> listeners;
  std::map<std::string, Backend, std::less<>> backends;
  std::vector<Grant> grants;  // in file order; empty: every identity may use every backend
  std::map<std::string, RuleSet, std::less<>> rules;

  const Backend* find_backend(std::string_view name) const;
  const RuleSet* find_rules(std::string_view name) const;
};

}  // namespace pgwarden::config
