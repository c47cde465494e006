// Internal to the config layer: the spelling of every enumerated configuration value, shared
// by the loader (parsing, "expected one of" messages) and the to_string() functions. One
// table per enum, in the order the documentation lists the values.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.h"

namespace pgwarden::config::detail {

// The enum type a name table maps to.
template <typename Table>
using EnumOf = typename Table::value_type::second_type;

inline constexpr auto kLogLevels = std::to_array<std::pair<std::string_view, LogLevel>>({
    {"trace", LogLevel::Trace},
    {"debug", LogLevel::Debug},
    {"info", LogLevel::Info},
    {"warn", LogLevel::Warn},
    {"error", LogLevel::Error},
    {"critical", LogLevel::Critical},
    {"off", LogLevel::Off},
});
inline constexpr auto kLogFormats = std::to_array<std::pair<std::string_view, LogFormat>>(
    {{"text", LogFormat::Text}, {"json", LogFormat::Json}});
inline constexpr auto kAuditStatements =
    std::to_array<std::pair<std::string_view, AuditStatements>>({
        {"none", AuditStatements::None},
        {"ddl", AuditStatements::Ddl},
        {"write", AuditStatements::Write},
        {"all", AuditStatements::All},
    });
inline constexpr auto kAuditLiterals = std::to_array<std::pair<std::string_view, AuditLiterals>>(
    {{"redact", AuditLiterals::Redact}, {"keep", AuditLiterals::Keep}});
inline constexpr auto kListenerTls =
    std::to_array<std::pair<std::string_view, ListenerTls>>({{"disable", ListenerTls::Disable},
                                                             {"allow", ListenerTls::Allow},
                                                             {"require", ListenerTls::Require}});
inline constexpr auto kTlsVersions = std::to_array<std::pair<std::string_view, TlsVersion>>(
    {{"1.2", TlsVersion::Tls12}, {"1.3", TlsVersion::Tls13}});
inline constexpr auto kClientCert = std::to_array<std::pair<std::string_view, ClientCertMode>>(
    {{"optional", ClientCertMode::Optional}, {"require", ClientCertMode::Require}});
inline constexpr auto kCertIdentity =
    std::to_array<std::pair<std::string_view, CertIdentity>>({{"cn", CertIdentity::Cn},
                                                              {"san-email", CertIdentity::SanEmail},
                                                              {"san-dns", CertIdentity::SanDns}});
inline constexpr auto kAuthMethods = std::to_array<std::pair<std::string_view, AuthMethod>>({
    {"trust", AuthMethod::Trust},
    {"scram", AuthMethod::Scram},
    {"cert", AuthMethod::Cert},
    {"token", AuthMethod::Token},
    {"api_key", AuthMethod::ApiKey},
    {"tailscale", AuthMethod::Tailscale},
    {"passthrough", AuthMethod::Passthrough},
});
inline constexpr auto kTokenAlgorithms =
    std::to_array<std::pair<std::string_view, TokenAlgorithm>>({
        {"RS256", TokenAlgorithm::Rs256},
        {"ES256", TokenAlgorithm::Es256},
        {"EdDSA", TokenAlgorithm::EdDsa},
        {"HS256", TokenAlgorithm::Hs256},
    });
inline constexpr auto kBackendTls =
    std::to_array<std::pair<std::string_view, BackendTls>>({{"verify-full", BackendTls::VerifyFull},
                                                            {"verify-ca", BackendTls::VerifyCa},
                                                            {"disable", BackendTls::Disable}});
inline constexpr auto kCredentials = std::to_array<std::pair<std::string_view, Credentials>>(
    {{"static", Credentials::Static},
     {"provision", Credentials::Provision},
     {"passthrough", Credentials::Passthrough}});
inline constexpr auto kPresets = std::to_array<std::pair<std::string_view, Preset>>(
    {{"readonly", Preset::Readonly}, {"readwrite", Preset::Readwrite}, {"admin", Preset::Admin}});
inline constexpr auto kStatementKinds = std::to_array<std::pair<std::string_view, StatementKind>>({
    {"select", StatementKind::Select},
    {"insert", StatementKind::Insert},
    {"update", StatementKind::Update},
    {"delete", StatementKind::Delete},
    {"merge", StatementKind::Merge},
    {"copy", StatementKind::Copy},
    {"ddl", StatementKind::Ddl},
    {"drop", StatementKind::Drop},
    {"truncate", StatementKind::Truncate},
    {"grant", StatementKind::Grant},
    {"set", StatementKind::Set},
    {"show", StatementKind::Show},
    {"call", StatementKind::Call},
    {"do", StatementKind::Do},
    {"transaction", StatementKind::Transaction},
    {"explain", StatementKind::Explain},
    {"prepare", StatementKind::Prepare},
    {"execute", StatementKind::Execute},
    {"deallocate", StatementKind::Deallocate},
    {"cursor", StatementKind::Cursor},
    {"listen", StatementKind::Listen},
    {"notify", StatementKind::Notify},
    {"lock", StatementKind::Lock},
    {"vacuum", StatementKind::Vacuum},
    {"analyze", StatementKind::Analyze},
    {"maintenance", StatementKind::Maintenance},
    {"role", StatementKind::Role},
    {"alter_system", StatementKind::AlterSystem},
    {"load", StatementKind::Load},
    {"discard", StatementKind::Discard},
    {"reset", StatementKind::Reset},
    {"comment", StatementKind::Comment},
    {"other", StatementKind::Other},
});
inline constexpr auto kTableOperations =
    std::to_array<std::pair<std::string_view, TableOperation>>({
        {"all", TableOperation::All},
        {"select", TableOperation::Select},
        {"insert", TableOperation::Insert},
        {"update", TableOperation::Update},
        {"delete", TableOperation::Delete},
        {"merge", TableOperation::Merge},
        {"copy", TableOperation::Copy},
        {"truncate", TableOperation::Truncate},
    });
inline constexpr auto kMaskMethods =
    std::to_array<std::pair<std::string_view, MaskMethod>>({{"redact", MaskMethod::Redact},
                                                            {"partial", MaskMethod::Partial},
                                                            {"hash", MaskMethod::Hash},
                                                            {"null", MaskMethod::Null}});

template <typename Table, typename E>
std::string_view name_of(const Table& table, E value) {
  for (const auto& [name, v] : table) {
    if (v == value) {
      return name;
    }
  }
  return "?";
}

template <typename Table>
std::string allowed_list(const Table& table) {
  std::string out;
  for (const auto& [name, v] : table) {
    if (!out.empty()) {
      out += ", ";
    }
    out += '"';
    out += name;
    out += '"';
  }
  return out;
}

}  // namespace pgwarden::config::detail
