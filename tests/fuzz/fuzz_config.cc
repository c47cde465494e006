// Fuzz target for the configuration loader: arbitrary bytes as a TOML document, loaded from
// text with file checks off and a fixed environment. Properties checked besides "never
// crashes": loading is deterministic (the same diagnostics twice), a Config is returned
// exactly when there are no errors, every diagnostic of a text load carries a line number,
// and a document that validated still validates when loaded again. The same bytes are also
// parsed as a users file (whose errors must point at an existing line).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config/loader.h"
#include "config/users_file.h"

namespace {

using pgwarden::config::Diagnostics;
using pgwarden::config::LoadOptions;
using pgwarden::config::LoadResult;

LoadOptions fuzz_options() {
  LoadOptions o;
  o.check_files = false;
  o.env = [](std::string_view name) -> std::optional<std::string> {
    if (name == "A") {
      return "value";
    }
    if (name == "CERTS") {
      return "/certs";
    }
    if (name == "PORT") {
      return "6432";
    }
    if (name == "EMPTY") {
      return "";
    }
    return std::nullopt;
  };
  return o;
}

void check(bool condition) {
  if (!condition) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const LoadOptions options = fuzz_options();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const LoadResult first = pgwarden::config::load_config_text(text, "fuzz.toml", "/base", options);
  check(first.ok() == first.errors.empty());
  for (const auto* list : {&first.errors, &first.warnings}) {
    for (const auto& d : *list) {
      check(d.line >= 1);
      check(!d.message.empty());
    }
  }
  const LoadResult second = pgwarden::config::load_config_text(text, "fuzz.toml", "/base", options);
  check(first.errors == second.errors);
  check(first.warnings == second.warnings);
  check(first.ok() == second.ok());
  if (first.ok()) {
    check(!first.config->listeners.empty());
    check(!first.config->backends.empty());
    for (const auto& l : first.config->listeners) {
      check(first.config->find_backend(l.backend) != nullptr);
    }
  }

  Diagnostics user_errors;
  const auto users = pgwarden::config::parse_users_file(text, "users.txt", user_errors);
  std::size_t lines = 1;
  for (const char c : text) {
    lines += c == '\n' ? 1 : 0;
  }
  for (const auto& e : user_errors) {
    check(e.line >= 1 && e.line <= lines);
  }
  for (const auto& [name, entry] : users.users) {
    check(!name.empty() && entry.line >= 1 && entry.line <= lines);
  }
  return 0;
}
