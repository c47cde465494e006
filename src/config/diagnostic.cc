#include "config/diagnostic.h"

namespace pgwarden::config {

std::string Diagnostic::to_string() const {
  if (line == 0) {
    return file + ": " + message;
  }
  return file + ":" + std::to_string(line) + ": " + message;
}

std::string Diagnostic::to_warning_string() const {
  if (line == 0) {
    return file + ": warning: " + message;
  }
  return file + ":" + std::to_string(line) + ": warning: " + message;
}

}  // namespace pgwarden::config
