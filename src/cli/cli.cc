#include "cli/cli.h"

#include <openssl/crypto.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <istream>
#include <ostream>

#include "config/loader.h"
#include "config/users_file.h"
#include "crypto/scram.h"
#include "server/server.h"

#ifndef PGWARDEN_VERSION
#error "PGWARDEN_VERSION must be defined by the build"
#endif

namespace pgwarden::cli {
namespace {

// Wipes a password held in a std::string when the scope ends, on every path.
class WipeOnExit {
 public:
  explicit WipeOnExit(std::string& s) : s_(s) {}
  WipeOnExit(const WipeOnExit&) = delete;
  WipeOnExit& operator=(const WipeOnExit&) = delete;
  ~WipeOnExit() {
    if (s_.capacity() > 0) {
      OPENSSL_cleanse(s_.data(), s_.capacity());
    }
    s_.clear();
  }

 private:
  std::string& s_;
};

void print_diagnostics(const config::LoadResult& r, std::ostream& err) {
  for (const auto& w : r.warnings) {
    err << w.to_warning_string() << '\n';
  }
  for (const auto& e : r.errors) {
    err << e.to_string() << '\n';
  }
}

config::LoadResult load(const std::string& path, const CliIo& io) {
  config::LoadOptions options;
  options.env = io.env;
  return config::load_config_file(path, options);
}

int cmd_check(const std::string& path, CliIo& io) {
  const auto r = load(path, io);
  print_diagnostics(r, io.err);
  if (!r.ok()) {
    io.err << path << ": " << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors")
           << ", configuration rejected\n";
    return kExitFailure;
  }
  const auto& c = *r.config;
  io.out << path << ": configuration OK (" << c.listeners.size()
         << (c.listeners.size() == 1 ? " listener, " : " listeners, ") << c.backends.size()
         << (c.backends.size() == 1 ? " backend, " : " backends, ") << c.grants.size()
         << (c.grants.size() == 1 ? " grant, " : " grants, ") << c.rules.size()
         << (c.rules.size() == 1 ? " rule set" : " rule sets");
  if (!r.warnings.empty()) {
    io.out << ", " << r.warnings.size() << (r.warnings.size() == 1 ? " warning" : " warnings");
  }
  io.out << ")\n";
  return kExitOk;
}

int cmd_run(const std::string& path, CliIo& io) {
  const auto r = load(path, io);
  print_diagnostics(r, io.err);
  if (!r.ok()) {
    io.err << path << ": " << r.errors.size() << (r.errors.size() == 1 ? " error" : " errors")
           << ", not starting\n";
    return kExitFailure;
  }
  server::ServerOptions options;
  options.config_path = path;
  options.load_options.env = io.env;
  return server::run_server(r.config, options);
}

// Reads the first line of a non-interactive standard input, without its line terminator.
// Bounded: keeps at most kMaxPasswordBytes + 1 bytes, so a longer line shows up as too long
// (and is refused by the caller) rather than being silently truncated.
std::optional<std::string> read_password_line(std::istream& in) {
  std::string pw;
  pw.reserve(kMaxPasswordBytes + 1);  // no reallocation: no stray copies of the secret
  char c = 0;
  bool any = false;
  while (in.get(c)) {
    any = true;
    if (c == '\n') {
      break;
    }
    if (pw.size() <= kMaxPasswordBytes) {
      pw.push_back(c);
    }
  }
  if (!any) {
    return std::nullopt;
  }
  if (!pw.empty() && pw.back() == '\r') {
    pw.pop_back();
  }
  return pw;
}

int cmd_hash_password(std::uint32_t iterations, const std::optional<std::string>& name, CliIo& io) {
  if (iterations < kMinIterations || iterations > kMaxIterations) {
    io.err << "pgwarden hash-password: --iterations must be in " << kMinIterations << ".."
           << kMaxIterations << '\n';
    return kExitFailure;
  }
  if (name) {
    bool ok = !name->empty() && name->size() <= config::kMaxUserNameBytes;
    for (const char c : *name) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x20 || u == 0x7f) {
        ok = false;
      }
    }
    if (!ok) {
      io.err << "pgwarden hash-password: NAME must be 1.." << config::kMaxUserNameBytes
             << " bytes without control characters\n";
      return kExitFailure;
    }
  }
  if (iterations < kRecommendedMinIterations) {
    io.err << "pgwarden hash-password: warning: " << iterations
           << " iterations is below PostgreSQL's default of " << kRecommendedMinIterations
           << "; the verifier is cheaper to attack offline\n";
  }

  std::string password;
  WipeOnExit wipe_password(password);
  if (io.stdin_is_tty && io.read_secret) {
    auto first = io.read_secret("Password: ");
    if (!first) {
      io.err << "pgwarden hash-password: no password entered\n";
      return kExitFailure;
    }
    password = std::move(*first);
    WipeOnExit wipe_first(*first);
    auto second = io.read_secret("Repeat password: ");
    if (!second) {
      io.err << "pgwarden hash-password: no password entered\n";
      return kExitFailure;
    }
    WipeOnExit wipe_second(*second);
    if (password.size() != second->size() ||
        CRYPTO_memcmp(password.data(), second->data(), password.size()) != 0) {
      io.err << "pgwarden hash-password: the passwords do not match\n";
      return kExitFailure;
    }
  } else {
    auto line = read_password_line(io.in);
    if (line) {
      password = std::move(*line);
      WipeOnExit wipe_line(*line);
    }
  }
  // Both readers keep one byte past the limit, so an over-long password is refused here
  // whichever way it was entered, never truncated.
  if (password.size() > kMaxPasswordBytes) {
    io.err << "pgwarden hash-password: the password is longer than " << kMaxPasswordBytes
           << " bytes\n";
    return kExitFailure;
  }
  if (password.empty()) {
    io.err << "pgwarden hash-password: empty password refused\n";
    return kExitFailure;
  }
  auto verifier = crypto::make_scram_verifier(password, iterations);
  if (!verifier) {
    io.err << "pgwarden hash-password: " << crypto::to_string(verifier.error()) << '\n';
    return kExitFailure;
  }
  const std::string text = verifier->to_string();
  if (name) {
    io.out << config::quote_users_file_field(*name) << ' ' << config::quote_users_file_field(text)
           << '\n';
  } else {
    io.out << text << '\n';
  }
  return kExitOk;
}

}  // namespace

std::string_view version() {
  return PGWARDEN_VERSION;
}

std::optional<std::string> read_secret_from_terminal(std::string_view prompt) {
  std::fputs(std::string(prompt).c_str(), stderr);
  std::fflush(stderr);
  termios saved{};
  const bool have_tty = ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (have_tty) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  line.reserve(kMaxPasswordBytes + 1);  // no reallocation: no stray copies of the secret
  bool got_any = false;
  char c = 0;
  while (::read(STDIN_FILENO, &c, 1) == 1) {
    got_any = true;
    if (c == '\n') {
      break;
    }
    if (line.size() <= kMaxPasswordBytes) {
      line.push_back(c);
    }
  }
  if (have_tty) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  }
  c = 0;
  if (!got_any) {
    return std::nullopt;
  }
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return line;
}

int run_cli(int argc, const char* const* argv, CliIo& io) {
  CLI::App app{"pgwarden: an identity-aware security proxy for PostgreSQL", "pgwarden"};
  app.set_version_flag("--version", "pgwarden " + std::string(version()));
  app.require_subcommand(0, 1);
  std::string run_config;
  app.add_option("-c,--config", run_config, "Configuration file; run in the foreground")
      ->type_name("FILE");

  auto* check = app.add_subcommand("check", "Validate a configuration file and exit");
  std::string check_config;
  check->add_option("-c,--config", check_config, "Configuration file")
      ->type_name("FILE")
      ->required();

  auto* hash = app.add_subcommand(
      "hash-password",
      "Read a password on standard input and print its SCRAM-SHA-256 verifier (with NAME: a "
      "users-file line)");
  std::uint32_t iterations = crypto::kDefaultScramIterations;
  hash->add_option("--iterations", iterations, "PBKDF2 iteration count")
      ->type_name("N")
      ->capture_default_str();
  std::string name;
  hash->add_option("NAME", name, "User name for a users-file line");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, io.out, io.err);
    // --help and --version exit 0; every usage error exits 1.
    return code == 0 ? kExitOk : kExitFailure;
  }

  if (check->parsed()) {
    return cmd_check(check_config, io);
  }
  if (hash->parsed()) {
    return cmd_hash_password(
        iterations, hash->count("NAME") > 0 ? std::optional<std::string>(name) : std::nullopt, io);
  }
  if (!run_config.empty()) {
    return cmd_run(run_config, io);
  }
  io.err << app.help() << "\npgwarden: nothing to do; give -c FILE or a command\n";
  return kExitFailure;
}

}  // namespace pgwarden::cli
