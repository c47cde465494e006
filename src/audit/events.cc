#include "audit/events.h"

#include <cinttypes>
#include <cstdio>
#include <ctime>

namespace pgwarden::audit {
namespace {

using nlohmann::json;

json string_or_null(std::string_view s) {
  if (s.empty()) {
    return nullptr;
  }
  return std::string(s);
}

json tls_json(const std::optional<TlsFacts>& tls) {
  if (!tls) {
    return nullptr;
  }
  json j = json::object();
  j["version"] = tls->version;
  j["cipher"] = tls->cipher;
  j["sni"] = string_or_null(tls->sni);
  j["client_subject"] = tls->client_subject ? json(*tls->client_subject) : json(nullptr);
  return j;
}

json identity_json(const std::optional<identity::Identity>& id) {
  if (!id) {
    return nullptr;
  }
  json j = json::object();
  for (const auto& [key, value] : id->attributes) {
    j[key] = value;
  }
  // Written after the attributes: an attribute named like a core field must not be able to
  // change who the audit log says the client was.
  j["name"] = id->name;
  j["method"] = std::string(config::to_string(id->method));
  j["groups"] = id->groups;
  return j;
}

json common(std::string_view event, const SessionFacts& f) {
  json j = json::object();
  j["ts"] = rfc3339_now_us();
  j["event"] = std::string(event);
  j["session"] = format_session_id(f.session_id);
  j["listener"] = f.listener;
  j["client"] = f.client;
  j["tls"] = tls_json(f.tls);
  j["identity"] = identity_json(f.identity);
  j["database"] = string_or_null(f.database);
  j["backend"] = string_or_null(f.backend);
  j["backend_user"] = string_or_null(f.backend_user);
  return j;
}

}  // namespace

json session_start(const SessionFacts& facts, std::string_view upstream_auth) {
  json j = common("session_start", facts);
  j["upstream_auth"] = std::string(upstream_auth);
  return j;
}

json auth_failure(const SessionFacts& facts, std::string_view method, std::string_view reason) {
  json j = common("auth_failure", facts);
  j["user"] = facts.user;
  j["method"] = std::string(method);
  j["reason"] = std::string(reason);
  return j;
}

json session_denied(const SessionFacts& facts, std::string_view sqlstate, std::string_view reason) {
  json j = common("session_denied", facts);
  j["sqlstate"] = std::string(sqlstate);
  j["reason"] = std::string(reason);
  return j;
}

json session_end(const SessionFacts& facts, const SessionTotals& totals) {
  json j = common("session_end", facts);
  j["duration_us"] = totals.duration.count();
  j["bytes_in"] = totals.bytes_in;
  j["bytes_out"] = totals.bytes_out;
  j["statements"] = totals.statements;
  j["reason"] = totals.reason;
  return j;
}

std::string format_session_id(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, id);
  return buf;
}

std::string rfc3339_us(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto secs = floor<seconds>(us);
  const auto frac = (us - secs).count();  // 0..999999, also before 1970 thanks to floor
  const std::time_t tt = system_clock::to_time_t(time_point_cast<system_clock::duration>(secs));
  std::tm tm{};
  if (gmtime_r(&tt, &tm) == nullptr) {
    return "1970-01-01T00:00:00.000000Z";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

std::string rfc3339_now_us() {
  return rfc3339_us(std::chrono::system_clock::now());
}

}  // namespace pgwarden::audit
