#!/usr/bin/env bash
# The benchmark suite of issue 4: direct vs PgBouncer vs pgwarden on one machine.
#
#   bench/run.sh                      full run: RUNS=3, DURATION=10 (seconds per pgbench run)
#   QUICK=1 bench/run.sh              smoke test: 1 run, 3 s, 128 MiB COPY
#   SCENARIOS=1,2,8 bench/run.sh      only some scenarios (8 implies 1 and 2)
#   PGWARDEN_REV=HEAD~1 bench/run.sh  measure a committed revision (before/after figures)
#   PGWARDEN_BIN=path bench/run.sh    measure this binary, build nothing
#
# Builds pgwarden (Release) from the working tree in build/bench (PGWARDEN_BUILD_DIR), or
# from `git archive PGWARDEN_REV` in build/bench-rev-<sha>, then hands over to
# bench/bench.py, which starts PostgreSQL 15, PgBouncer and pgwarden in a temporary
# directory, runs the scenarios, writes bench/results/latest.md and latest.csv, and stops
# and removes everything it started, also on failure or Ctrl-C. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh

build_pgwarden() {  # source dir, build dir
  local generator=()
  if command -v ninja >/dev/null && [ ! -f "$2/CMakeCache.txt" ]; then
    generator=(-G Ninja)
  fi
  echo "building pgwarden (Release) from $1 in $2 ..." >&2
  cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DPGWARDEN_TESTS=OFF "${generator[@]}" \
    >/dev/null
  if ! cmake --build "$2" --target pgwarden -j"$(nproc)" >"$2/bench-build.log" 2>&1; then
    tail -n 40 "$2/bench-build.log" >&2
    exit 1
  fi
}

build=${PGWARDEN_BUILD_DIR:-build/bench}
if [ -n "${PGWARDEN_BIN:-}" ]; then
  PGWARDEN_SOURCE=${PGWARDEN_SOURCE:-"binary $PGWARDEN_BIN"}
elif [ -n "${PGWARDEN_REV:-}" ]; then
  sha=$(git rev-parse --short "${PGWARDEN_REV}^{commit}")
  dir=$build-rev-$sha
  if [ ! -f "$dir/src/CMakeLists.txt" ]; then
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    git archive "$sha" | tar -x -C "$dir/src"
  fi
  build_pgwarden "$dir/src" "$dir/build"
  PGWARDEN_BIN=$PWD/$dir/build/src/cli/pgwarden
  PGWARDEN_SOURCE="Release build of commit $sha"
else
  build_pgwarden . "$build"
  PGWARDEN_BIN=$PWD/$build/src/cli/pgwarden
  PGWARDEN_SOURCE="Release build of the working tree at $(git rev-parse --short HEAD)"
  if [ -n "$(git status --porcelain -- src CMakeLists.txt)" ]; then
    PGWARDEN_SOURCE+=" + uncommitted changes in src/"
  fi
fi
export PGWARDEN_BIN PGWARDEN_SOURCE

# exec: bench.py receives the signals directly and cleans up in its own `finally`.
exec python3 bench/bench.py "$@"
