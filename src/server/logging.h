// pgwarden's own log (not the audit log): spdlog's default logger on standard error, either
// human-readable text or one JSON object per line (`log_format = "json"`:
// {"ts": RFC 3339 with microseconds, "level": "info", "msg": "..."}), at `log_level`.
// Callers never pass secrets to the log; the formatter only escapes.
#pragma once

#include "config/config.h"

namespace pgwarden::server {

void configure_logging(config::LogLevel level, config::LogFormat format);

}  // namespace pgwarden::server
