#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a machine with a GPU but no network access and none
# of the Debian packages (GoogleTest, Google Benchmark, ...). The binaries are built on the
# development machine by tools/build-device.sh into build-device/, which travels with the
# repository; this script only runs them. It finishes in under 6 minutes on an H100/H200.
#
#   tools/device-check.sh OUTDIR
#
# Writes into OUTDIR:
#   nvidia-smi.txt      the GPU, driver and memory before and after
#   info.txt            `eqpm info` (build, visible devices)
#   gpu_tests.log/.json the GPU tests (--gtest_filter='Gpu*:*Cuda*'), GoogleTest JSON
#   bench_gpu.log/.json the GPU benchmarks (and the CPU on the same workload), Benchmark JSON
#   summary.txt         pass/fail counts and where cuBLAS was found
# Exit status: 0 when every GPU test passed; non-zero when a test failed, the test binary is
# missing or crashed, or no device is visible.
set -uo pipefail
out="${1:?usage: tools/device-check.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
bin="${EQPM_DEVICE_BUILD:-build-device}"
log() { echo "[device-check] $*" | tee -a "$out/summary.txt"; }
: >"$out/summary.txt"

# cuBLAS is linked dynamically (libcublas.so.13 / libcublasLt.so.13): find this machine's copy.
find_cublas() {
  local d
  for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 \
           /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libcublas.so.13" ] && { echo "$d"; return; }
  done
  d="$(python3 - 2>/dev/null <<'PY'
import importlib.util, os
spec = importlib.util.find_spec("nvidia.cublas")
for root in (spec.submodule_search_locations or []) if spec else []:
    if os.path.exists(os.path.join(root, "lib", "libcublas.so.13")):
        print(os.path.join(root, "lib")); break
PY
)"
  [ -n "$d" ] && { echo "$d"; return; }
  d="$(timeout 30 find /usr /opt -name 'libcublas.so.13' 2>/dev/null | head -n 1)"
  [ -n "$d" ] && dirname "$d"
}
cublas_dir="$(find_cublas)"
log "cuBLAS: ${cublas_dir:-not found (the binaries will not start)}"
export LD_LIBRARY_PATH="$PWD/$bin/lib${cublas_dir:+:$cublas_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

{ timeout 30 nvidia-smi; timeout 30 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version \
    --format=csv; } >"$out/nvidia-smi.txt" 2>&1

if [ ! -x "$bin/eqpm_tests" ]; then
  log "FAIL: $bin/eqpm_tests not found; build it with tools/build-device.sh and carry $bin/"
  exit 2
fi
ldd "$bin/eqpm_tests" >"$out/ldd.txt" 2>&1
[ -x "$bin/eqpm" ] && timeout 60 "$bin/eqpm" info >"$out/info.txt" 2>&1

# GPU tests (the CPU reference runs inside them on this machine's cores).
timeout 210 "$bin/eqpm_tests" --gtest_filter='Gpu*:*Cuda*' \
  --gtest_output="json:$out/gpu_tests.json" 2>&1 | tee "$out/gpu_tests.log"
test_rc=${PIPESTATUS[0]}
passed=$(grep -c '^\[       OK \]' "$out/gpu_tests.log")
failed=$(grep -c '^\[  FAILED  \].*(' "$out/gpu_tests.log")
skipped=$(grep -c '^\[  SKIPPED \].*(' "$out/gpu_tests.log")
log "GPU tests: exit $test_rc, $passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -gt 0 ] && [ "$passed" -eq 0 ]; then
  log "FAIL: every GPU test skipped (no device visible?)"
  test_rc=3
fi

# GPU benchmarks: the step and the regret stage for N = 1e3..1e6, and the CPU on the same
# workload up to 1e5 for the speed-up.
if [ -x "$bin/eqpm_bench" ]; then
  timeout 150 "$bin/eqpm_bench" --benchmark_filter='BM_Gpu|BM_CpuStepSameWorkload' \
    --benchmark_out="$out/bench_gpu.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true 2>&1 | tee "$out/bench_gpu.log"
  log "benchmarks: exit ${PIPESTATUS[0]}"
else
  log "no $bin/eqpm_bench (Google Benchmark missing at build time): benchmarks skipped"
fi
timeout 30 nvidia-smi --query-gpu=memory.used --format=csv >>"$out/nvidia-smi.txt" 2>&1

[ "$test_rc" -eq 0 ] && log "PASS" || log "FAIL (tests exit $test_rc)"
exit "$test_rc"
