// The pgwarden command line. run_cli() parses arguments with CLI11 and runs one command:
//   pgwarden --version                       print "pgwarden <version>"
//   pgwarden check -c FILE                   validate; exit 0, or print every error and exit 1
//   pgwarden hash-password [--iterations N] [NAME]
//                                            read a password, print a SCRAM-SHA-256 verifier
//                                            (or a users-file line for NAME)
//   pgwarden -c FILE                         validate, then run the proxy in the foreground
//                                            (server/server.h) until a SIGTERM drain
// All input and output goes through CliIo, so tests drive the commands in-process. Exit
// codes: 0 success, 1 invalid configuration, start-up failure or usage error. Nothing here prints a
// password or a secret from the configuration.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "config/values.h"

namespace pgwarden::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;

// hash-password bounds: PostgreSQL accepts any count >= 1, but fewer than its default of 4096
// makes offline guessing cheap (a warning), and more than 10 million takes seconds per login.
inline constexpr std::uint32_t kMinIterations = 1;
inline constexpr std::uint32_t kRecommendedMinIterations = 4096;
inline constexpr std::uint32_t kMaxIterations = 10'000'000;
// Longest password hash-password reads; longer input is refused rather than truncated.
inline constexpr std::size_t kMaxPasswordBytes = 1024;

// The version string, from the PGWARDEN_VERSION compile definition.
std::string_view version();

struct CliIo {
  std::istream& in;
  std::ostream& out;
  std::ostream& err;
  // When set, hash-password prompts (without echo) through read_secret and asks twice.
  bool stdin_is_tty = false;
  // Reads one line from the terminal without echo after printing `prompt`; nullopt on EOF.
  std::function<std::optional<std::string>(std::string_view prompt)> read_secret;
  // Environment for ${NAME} expansion in configuration files.
  config::EnvLookup env = config::process_environment();
};

int run_cli(int argc, const char* const* argv, CliIo& io);

// Reads a line from the controlling terminal (standard input) with echo switched off,
// printing `prompt` to standard error. nullopt on EOF or error.
std::optional<std::string> read_secret_from_terminal(std::string_view prompt);

}  // namespace pgwarden::cli
