// What pgwarden sends upstream in its own StartupMessage, derived from the client's
// (SPEC section 4): every ordinary parameter is forwarded in the client's order
// (application_name, client_encoding, DateStyle, TimeZone, options, ...), except that
//  - `user` and `database` are replaced by the values the credentials mode dictates;
//  - the settings pgwarden controls (kControlledSettings, and every "pgwarden.*" but
//    pgwarden.preset) are refused with 42501, however the client spells them;
//  - pgwarden.preset is taken out (into own_settings) for the session to validate;
//  - protocol options ("_pq_.*") are not forwarded: pgwarden implements none, so the client
//    is told so with NegotiateProtocolVersion, as PostgreSQL would;
//  - `replication` is reported separately so the session can refuse it.
// The protocol minor version asked of the upstream is the client's, capped at 2.
//
// `options` is read exactly as PostgreSQL 15 reads it (postinit.c process_startup_options):
// pg_split_opts (whitespace separates, a backslash makes the next byte literal, a trailing
// backslash is dropped), then process_postgres_switches, which is glibc getopt over
// kPostgresSwitches: bundled letters (`-ec x=y`, `-e-x=y`), an argument glued on (`-cx=y`) or
// in the next word (`-c x=y`, even when that word starts with '-'), `--name=value`, and
// letters that set a setting themselves (-B shared_buffers, -S work_mem, -e DateStyle, ...).
// Threat: any difference between this reading and the server's lets a client hide a setting
// from pgwarden (`-ec pgwarden.preset=admin` once got through). So nothing the server could
// read differently is forwarded: the switches are re-emitted one by one in a canonical,
// fully escaped form, so the server applies exactly the settings validated here. Anything
// PostgreSQL would refuse anyway (an unknown letter, a missing argument, a word that is not a
// switch, `--name` without `=value`) is refused with 22023 instead.
#pragma once

#include <array>
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
// The one pgwarden setting a client may send (SPEC section 5: lower its preset).
inline constexpr std::string_view kPresetSetting = "pgwarden.preset";

// Settings pgwarden controls and a client may never send at startup, in any spelling, as a
// bare startup parameter or inside `options`. Threat: read-only presets are enforced with
// default_transaction_read_only (and transaction_read_only at the start of each
// transaction), and the identity inside the database is the provisioned role: a client that
// could set these at startup would undo read-only or act as another role. pgwarden's own
// "pgwarden.*" settings (identity, method, groups) are what row-level security and triggers
// trust, so every one of them but kPresetSetting is refused too (is_controlled_setting).
// Names are canonical: ASCII lower case, '_' for '-' (canonical_setting_name).
inline constexpr std::array<std::string_view, 4> kControlledSettings = {
    "default_transaction_read_only", "transaction_read_only", "role", "session_authorization"};

// process_postgres_switches' getopt string in PostgreSQL 15 (src/backend/tcop/postgres.c):
// a letter followed by ':' takes an argument.
inline constexpr std::string_view kPostgresSwitches =
    "B:bC:c:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:v:W:-:";

inline constexpr std::string_view kSqlstateInvalidParameterValue = "22023";
inline constexpr std::string_view kSqlstateInsufficientPrivilege = "42501";

// Why the client's startup parameters are refused: the SQLSTATE of the FATAL to send
// (42501 for a controlled setting, 22023 for a malformed one) and its whole message. The
// message names a setting at most, never a value (a value may be a secret).
struct StartupParamsError {
  std::string_view sqlstate;
  std::string message;
  bool operator==(const StartupParamsError&) const = default;
};

// How PostgreSQL looks a setting name up: ASCII case folded (guc_name_compare) and, for
// `-c`/`--` switches, '-' read as '_' (ParseLongOption). Applying the dash rule to bare
// startup parameters too only refuses more: no real setting name has a '-'.
std::string canonical_setting_name(std::string_view name);

// Whether a client is refused `canonical` (a canonical_setting_name).
bool is_controlled_setting(std::string_view canonical);

// pg_split_opts: the words the server makes of an `options` value.
std::vector<std::string> split_options(std::string_view options);

// One switch of `options` as getopt returns it.
struct OptionSwitch {
  char letter = 0;                    // a kPostgresSwitches letter; '-' for `--name=value`
  std::string argument;               // for letters that take one ("name=value" for 'c' and '-')
  std::vector<std::string> settings;  // canonical names of the settings it sets, if any
  bool operator==(const OptionSwitch&) const = default;
};

// The switches of `options`, in order, as PostgreSQL 15 reads them. Error 22023 where
// PostgreSQL would refuse the string (and for an empty argument, which only a trailing
// backslash can produce and which no switch uses to set anything); controlled settings are
// not checked here.
std::expected<std::vector<OptionSwitch>, StartupParamsError> parse_options(
    std::string_view options);

// The canonical `options` text for `switches`: one word per switch ("-c" and its argument
// as two), every byte that could separate words or escape escaped, so that split_options
// and parse_options of the result give back exactly `switches`.
std::string join_options(const std::vector<OptionSwitch>& switches);

// parse_options, then: a controlled setting is an error (42501); pgwarden.preset is moved
// into `own` (last one wins) and dropped; the other switches are joined again. "" when
// nothing is left.
std::expected<std::string, StartupParamsError> strip_own_options(
    std::string_view options, std::map<std::string, std::string>& own);

struct UpstreamStartup {
  std::vector<std::pair<std::string, std::string>> parameters;  // user and database first
  std::uint16_t minor = 0;                        // protocol minor version to ask the upstream for
  std::vector<std::string> unrecognized_options;  // the client's "_pq_." options
  // Only kPresetSetting can be here (the others are refused): name -> value.
  std::map<std::string, std::string> own_settings;
  bool replication = false;  // the client asked for a replication connection
};

std::expected<UpstreamStartup, StartupParamsError> build_upstream_startup(
    const wire::StartupMessage& client, std::string_view user, std::string_view database);

}  // namespace pgwarden::session
