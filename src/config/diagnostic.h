// One problem found while loading configuration: the file it is in (the configuration file
// itself, or a file it references such as a users file), the 1-based line, and a message.
// Rendered as "file:line: message" (warnings as "file:line: warning: message"), the format
// editors and CI annotations understand. Messages name keys and explain what is wrong; they
// never contain secret values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pgwarden::config {

struct Diagnostic {
  std::string file;
  std::uint32_t line = 0;  // 1-based; 0 only when no position is known at all
  std::string message;

  std::string to_string() const;
  std::string to_warning_string() const;
  bool operator==(const Diagnostic&) const = default;
};

using Diagnostics = std::vector<Diagnostic>;

}  // namespace pgwarden::config
