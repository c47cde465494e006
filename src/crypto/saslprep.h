// SASLprep (RFC 4013) of passwords, exactly as PostgreSQL applies it (pg_saslprep in
// src/common/saslprep.c) before deriving SCRAM keys, so that a password typed here produces the
// same keys as libpq and the PostgreSQL server do:
//   - a password of only ASCII bytes is used unchanged (PostgreSQL skips all processing; this
//     keeps ASCII control characters, which strict SASLprep would prohibit);
//   - otherwise, if it is valid UTF-8 and SASLprep succeeds (map non-ASCII spaces to U+0020,
//     drop "commonly mapped to nothing" characters, NFKC, no prohibited or unassigned code
//     point, bidi rule), the prepared string is used;
//   - in every other case (invalid UTF-8, a prohibited or unassigned code point, a bidi
//     violation, or a string that maps to nothing) the raw bytes are used, as PostgreSQL does.
// The mapping, normalisation and tables come from GNU libidn's stringprep SASLprep profile
// (Debian package libidn-dev), with unassigned code points prohibited as in PostgreSQL.
// Never fails and never throws (std::bad_alloc aside); intermediate buffers are wiped.
#pragma once

#include <string>
#include <string_view>

namespace pgwarden::crypto {

std::string saslprep_or_raw(std::string_view password);

// Strict UTF-8 validity as PostgreSQL's pg_utf8_islegal judges it: no overlong forms, no
// surrogates, nothing above U+10FFFF, no truncated sequence. NUL bytes are rejected too,
// since a PostgreSQL password is a C string.
bool is_valid_utf8(std::string_view s);

}  // namespace pgwarden::crypto
