#!/usr/bin/env bash
# Builds every libFuzzer target (clang-19, ASan + UBSan) and runs each one, starting from
# its corpus in tests/fuzz/corpus/<name>/, for a bounded time. Exits non-zero if any target
# finds a crash, a leak or a sanitizer report.
# Usage: scripts/fuzz.sh [--seconds N] [--runs N] [target...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
runs=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

scripts/deps.sh
build=${PGWARDEN_FUZZ_BUILD_DIR:-build/fuzz}
cmake -S . -B "$build" -DPGWARDEN_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 >/dev/null
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cc; do
    targets+=("$(basename "$src" .cc)")
  done
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

failed=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  corpus=tests/fuzz/corpus/$name
  work=$(mktemp -d)
  # New inputs go to a scratch directory so a CI run never rewrites the committed corpus.
  args=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$work/")
  if [ -n "$runs" ]; then
    args=(-runs="$runs" -print_final_stats=1 -artifact_prefix="$work/")
  fi
  mkdir -p "$work/corpus"
  if [ -d "$corpus" ]; then
    cp -r "$corpus/." "$work/corpus/"
  fi
  if "$build/tests/fuzz/$t" "${args[@]}" "$work/corpus" >"$work/log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log" | grep -o '[0-9]*$')
    echo "fuzz: $t ok (${execs:-?} executions)"
  else
    echo "fuzz: $t FAILED"
    tail -n 60 "$work/log"
    failed=1
  fi
  rm -rf "$work"
done
exit $failed
