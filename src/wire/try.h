// Early-return helpers for the codec's .cc files (not part of the public API: do not include
// from headers). PGW_TRY(lhs, expr) evaluates a std::expected-returning expression and, on
// error, returns that error from the enclosing function; otherwise it assigns the value to
// lhs (which may be a declaration: PGW_TRY(auto n, r.i16())). PGW_CHECK(expr) does the same
// for std::expected<void, E>.
#pragma once

#include <expected>
#include <utility>

#define PGW_TRY_CAT2(a, b) a##b
#define PGW_TRY_CAT(a, b) PGW_TRY_CAT2(a, b)
#define PGW_TRY(lhs, expr)                                           \
  auto PGW_TRY_CAT(pgw_try_, __LINE__) = (expr);                     \
  if (!PGW_TRY_CAT(pgw_try_, __LINE__)) {                            \
    return std::unexpected(PGW_TRY_CAT(pgw_try_, __LINE__).error()); \
  }                                                                  \
  lhs = std::move(*PGW_TRY_CAT(pgw_try_, __LINE__))
#define PGW_CHECK(expr)                      \
  if (auto pgw_chk = (expr); !pgw_chk) {     \
    return std::unexpected(pgw_chk.error()); \
  }
