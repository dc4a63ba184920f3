#!/usr/bin/env bash
# Runs the standard benchmark set (CPU, and GPU when a device is visible) and writes
# Google Benchmark JSON.   tools/bench.sh OUT.json [extra google-benchmark flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: tools/bench.sh OUT.json}"
shift
tools/setup.sh build >/dev/null
build/eqpm info
build/eqpm_bench --benchmark_out="$out" --benchmark_out_format=json \
  --benchmark_counters_tabular=true "$@"
echo "wrote $out"
