// pgwarden's own log (not the audit log): spdlog's default logger on standard error, either
// human-readable text or one JSON object per line (`log_format = "json"`:
// {"ts": RFC 3339 with microseconds, "level": "info", "msg": "..."}), at `log_level`.
// Callers never pass secrets to the log; the formatter only escapes.
//
// Threat: messages carry client-supplied text (user, database, application_name, SNI,
// certificate subject, error text). A raw newline in any of them would let an unauthenticated
// client forge log lines. Both formatters therefore escape every message as a whole, so no
// call site can forget: the text format through escape_log_text, the JSON format as a JSON
// string (control characters escaped, invalid UTF-8 replaced).
#pragma once

#include <string>
#include <string_view>

#include "config/config.h"

namespace pgwarden::server {

void configure_logging(config::LogLevel level, config::LogFormat format);

// Text as the human-readable log shows it: valid, printable UTF-8 is kept as is; \n, \r and \t
// become "\\n", "\\r" and "\\t"; every other C0 control, DEL, each byte of a C1 control,
// of a line or paragraph separator (U+2028, U+2029), of a bidirectional override or isolate
// (U+202A..U+202E, U+2066..U+2069), and every byte of invalid UTF-8 becomes "\\xNN".
std::string escape_log_text(std::string_view text);

}  // namespace pgwarden::server
