#include "config/config.h"

#include <algorithm>

#include "config/enum_names.h"

namespace pgwarden::config {

std::string_view to_string(LogLevel v) {
  return detail::name_of(detail::kLogLevels, v);
}
std::string_view to_string(LogFormat v) {
  return detail::name_of(detail::kLogFormats, v);
}
std::string_view to_string(AuditStatements v) {
  return detail::name_of(detail::kAuditStatements, v);
}
std::string_view to_string(AuditLiterals v) {
  return detail::name_of(detail::kAuditLiterals, v);
}
std::string_view to_string(ListenerTls v) {
  return detail::name_of(detail::kListenerTls, v);
}
std::string_view to_string(TlsVersion v) {
  return detail::name_of(detail::kTlsVersions, v);
}
std::string_view to_string(ClientCertMode v) {
  if (v == ClientCertMode::None) {
    return "none";
  }
  return detail::name_of(detail::kClientCert, v);
}
std::string_view to_string(CertIdentity v) {
  return detail::name_of(detail::kCertIdentity, v);
}
std::string_view to_string(AuthMethod v) {
  return detail::name_of(detail::kAuthMethods, v);
}
std::string_view to_string(TokenAlgorithm v) {
  return detail::name_of(detail::kTokenAlgorithms, v);
}
std::string_view to_string(BackendTls v) {
  return detail::name_of(detail::kBackendTls, v);
}
std::string_view to_string(Credentials v) {
  return detail::name_of(detail::kCredentials, v);
}
std::string_view to_string(Preset v) {
  return detail::name_of(detail::kPresets, v);
}
std::string_view to_string(StatementKind v) {
  return detail::name_of(detail::kStatementKinds, v);
}
std::string_view to_string(TableOperation v) {
  return detail::name_of(detail::kTableOperations, v);
}
std::string_view to_string(MaskMethod v) {
  return detail::name_of(detail::kMaskMethods, v);
}

bool Listener::has_auth(AuthMethod m) const {
  return std::find(auth.begin(), auth.end(), m) != auth.end();
}

const Backend* Config::find_backend(std::string_view name) const {
  const auto it = backends.find(name);
  return it == backends.end() ? nullptr : &it->second;
}

const RuleSet* Config::find_rules(std::string_view name) const {
  const auto it = rules.find(name);
  return it == rules.end() ? nullptr : &it->second;
}

}  // namespace pgwarden::config
