// Loading configuration: TOML text -> validated, immutable Config, or the complete list of
// problems. The loader never stops at the first problem: it reports every syntax error it can
// (toml++ stops at the first syntax error, so that is one), every unknown key at any depth,
// every wrong type, bad enum value (with the allowed values), bad duration/size/address,
// unset ${VAR}, missing or unreadable file, and every impossible combination, each as
// "file:line: message". Warnings (valid but risky settings, e.g. trust on a non-loopback
// listener) are returned separately and do not prevent loading. A Config is returned only
// when there are no errors. Exceptions from toml++ are caught here; the public functions
// never throw except std::bad_alloc.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"
#include "config/diagnostic.h"
#include "config/values.h"

namespace pgwarden::config {

// Configuration files larger than this are refused before they are read.
inline constexpr std::size_t kMaxConfigFileBytes = 4 * 1024 * 1024;
// Referenced files (certificates, keys, password files, JWKS) larger than this are refused.
inline constexpr std::size_t kMaxReferencedFileBytes = 4 * 1024 * 1024;

struct LoadOptions {
  // Environment for ${NAME} expansion; defaults to the process environment.
  EnvLookup env = process_environment();
  // Check that referenced files exist and are readable, and read password files, secret files
  // and users files. Off only for fuzzing and for tests of pure syntax.
  bool check_files = true;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // set if and only if errors is empty
  Diagnostics errors;
  Diagnostics warnings;

  bool ok() const { return config != nullptr; }
};

// Reads and loads the file at `path`. Relative paths inside resolve against its directory.
LoadResult load_config_file(const std::filesystem::path& path, const LoadOptions& options = {});

// Loads configuration text. `display_name` is the file name used in diagnostics;
// relative paths inside resolve against `base_dir`.
LoadResult load_config_text(std::string_view text, const std::string& display_name,
                            const std::filesystem::path& base_dir, const LoadOptions& options = {});

}  // namespace pgwarden::config
