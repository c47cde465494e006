// What pgwarden sends upstream in its own StartupMessage, derived from the client's
// (SPEC section 4): every ordinary parameter is forwarded in the client's order
// (application_name, client_encoding, DateStyle, TimeZone, options, ...), except that
//  - `user` and `database` are replaced by the values the credentials mode dictates;
//  - pgwarden's own settings are taken out: parameters named "pgwarden.*", and
//    `-c pgwarden.x=y` / `--pgwarden.x=y` switches inside `options` (the rest of `options` is
//    forwarded with PostgreSQL's backslash escaping preserved);
//  - protocol options ("_pq_.*") are not forwarded: pgwarden implements none, so the client
//    is told so with NegotiateProtocolVersion, as PostgreSQL would;
//  - `replication` is reported separately so the session can refuse it.
// The protocol minor version asked of the upstream is the client's, capped at 3.2, the newest
// this codec implements.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wire/startup.h"

namespace pgwarden::session {

inline constexpr std::string_view kOwnSettingPrefix = "pgwarden.";

struct UpstreamStartup {
  std::vector<std::pair<std::string, std::string>> parameters;  // user and database first
  std::uint16_t minor = 0;                        // protocol minor version to ask the upstream for
  std::vector<std::string> unrecognized_options;  // the client's "_pq_." options
  std::map<std::string, std::string> own_settings;  // "pgwarden.x" -> value (name lower-case)
  bool replication = false;                         // the client asked for a replication connection
};

// Splits the `options` value as PostgreSQL does (whitespace separates, backslash escapes the
// next character), removes pgwarden's own switches into `own`, and joins the rest again with
// escaping. Error: a `-c` at the end with no setting, or a malformed pgwarden setting.
std::expected<std::string, std::string> strip_own_options(std::string_view options,
                                                          std::map<std::string, std::string>& own);

std::expected<UpstreamStartup, std::string> build_upstream_startup(
    const wire::StartupMessage& client, std::string_view user, std::string_view database);

}  // namespace pgwarden::session
