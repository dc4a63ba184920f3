#!/usr/bin/env bash
# Builds the CPU code and unit tests with AddressSanitizer + UndefinedBehaviorSanitizer
# (no CUDA, no benchmarks) and runs the suite; the longest training tests are left to
# the normal build (tools/test.sh) to keep CI short.
set -euo pipefail
cd "$(dirname "$0")/.."
# -O1 with line tables only: what the sanitizers need (their reports name file and line),
# and it compiles in less than half the time of -O2 -g.
EQPM_NO_CUDA=1 EQPM_BUILD_TYPE=RelWithDebInfo tools/setup.sh build-asan \
  -DEQPM_SANITIZE=ON -DEQPM_BENCHMARKS=OFF "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
cd build-asan
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Tests whose suite name contains "Slow" (long training runs) are left to tools/test.sh.
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 900 -E Slow
