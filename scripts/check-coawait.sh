#!/usr/bin/env bash
# Refuses a temporary of a non-trivially-destructible type inside a co_await expression
# (STYLE rule 13). g++ 12 can destroy such a temporary twice when the coroutine resumes
# (a double free that aborts the whole process: every session in it dies). Example:
#     co_await refuse_upstream(UpstreamFailure{"connect", "lost", {}, {}});   // refused
#     const UpstreamFailure f{"connect", "lost", {}, {}};
#     co_await refuse_upstream(f);                                           // fine
# By-value parameters of class type count too (the argument is a temporary in the caller):
# take such parameters by reference or std::string_view.
#
# Why a repository check and not a clang build next to g++: clang compiles the same code
# correctly, so a clang build would pass while the g++ binary we ship still crashes. The
# check reads clang's AST instead (clang-query), which is exact: it flags every
# CXXBindTemporaryExpr (a temporary whose destructor must run) below a CoawaitExpr, except
# the awaitable itself and the value co_await returns.
#
# Usage: scripts/check-coawait.sh BUILD_DIR   (a configured build with compile_commands.json)
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/check-coawait.sh BUILD_DIR}
query=$(command -v clang-query-19 || true)
if [ -z "$query" ]; then
  echo "check-coawait: clang-query-19 not found (Debian package clang-tools-19)" >&2
  exit 2
fi
if [ ! -f "$build/compile_commands.json" ]; then
  echo "check-coawait: $build/compile_commands.json not found" >&2
  exit 2
fi

# Code of this repository only (headers included), not asio's or the standard library's.
repo_re=$(sed 's/[][\.^$*+?(){}|]/\\&/g' <<<"$PWD")
matcher='cxxBindTemporaryExpr(isExpansionInFileMatching("^'"$repo_re"'/(src|tests)/"),
  hasAncestor(coawaitExpr()),
  unless(hasType(hasUnqualifiedDesugaredType(recordType(hasDeclaration(
    namedDecl(hasAnyName("::asio::awaitable"))))))),
  unless(has(cxxMemberCallExpr(callee(cxxMethodDecl(hasName("await_resume")))))))'
matcher=$(tr -d '\n' <<<"$matcher")

mapfile -t files < <(git ls-files --cached --others --exclude-standard 'src/*.cc' 'tests/*.cc' | xargs grep -l 'co_await' || true)
if [ ${#files[@]} -eq 0 ]; then
  echo "check-coawait: no file uses co_await"
  exit 0
fi

# asio 1.22 detects coroutine support from __cpp_coroutines, which clang >= 17 no longer
# defines: say it explicitly, as g++ 12 gets it from -std=c++23.
out=$("$query" -p "$build" --extra-arg=-DASIO_HAS_CO_AWAIT=1 \
  --extra-arg=-DASIO_HAS_STD_COROUTINE=1 --extra-arg=-Wno-everything \
  -c 'set output diag' -c "match $matcher" "${files[@]}" 2>&1) || {
  echo "$out" | tail -20
  echo "check-coawait: clang-query failed" >&2
  exit 2
}
if grep -q ': error:' <<<"$out"; then
  grep ': error:' <<<"$out" | head -20
  echo "check-coawait: the sources did not parse; the check would be blind" >&2
  exit 2
fi
sites=$(grep -E '^/.*: note: "root" binds here' <<<"$out" | sed -E 's|^'"$PWD"'/||; s|: note:.*||' |
  cut -d: -f1,2 | sort -u -t: -k1,1 -k2,2n || true)
if [ -n "$sites" ]; then
  echo "check-coawait: a temporary of a non-trivial type inside a co_await expression"
  echo "(g++ 12 may destroy it twice; name it first, STYLE rule 13):"
  sed 's/^/  /' <<<"$sites"
  exit 1
fi
echo "check-coawait: ${#files[@]} files, no temporary inside a co_await expression"
