#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a machine with a GPU but no network access and none
# of the Debian packages (GoogleTest, Google Benchmark, ...). The binaries are built on the
# development machine by tools/build-device.sh into build-device/, which travels with the
# repository; this script only runs them, each step under its own timeout, in at most 300 s
# all together (so a second run fits in a 15-minute loan).
#
#   tools/device-check.sh --dry-run      # the steps, their timeouts and the total; runs nothing
#   tools/device-check.sh OUTDIR
#
# Steps (see --dry-run for the timeouts):
#   preflight  the binaries exist, carry the commit of this checkout (embedded at build time)
#              and were built from these sources (build-device/SOURCES.sha256); cuBLAS found
#   info       `eqpm info`, nvidia-smi; at least one visible device
#   gpu-tests  the GPU test suite: every stage against the CPU reference (parity), H = 64,
#              graph replay against eager launches (graphs on: a capture failure fails),
#              two-run bitwise reproducibility; and the host launch-configuration checks
#   memcheck, racecheck, synccheck
#              compute-sanitizer on a small configuration of every kernel, when the tool is
#              installed and can attach to the device (else skipped, with the reason)
#   bench      N = 1e3 .. 1e6 agents at B = 64, S = 16, H = 12: GPU step, GPU regret stage
#              (medians of CUDA-event stage times on warm eager steps) and the CPU backend on
#              the same workload; the table has the GPU/CPU speed-up, the achieved FLOP rate
#              and bandwidth and their fractions of the H200's peaks (tools/bench_table.py)
#
# Writes into OUTDIR: summary.md and summary.json (the verdict of every step), check.log,
# steps.tsv, info.txt, nvidia-smi.txt, ldd.txt, gpu_tests.log/.json, sanitizer_<tool>.log,
# bench.log/.json, bench_table.md.
# Exit status: 0 when every step passed (a sanitizer that cannot run is a skip, not a
# failure); 1 when a test, a sanitizer or a benchmark failed or a graph capture failed;
# 2 when the binaries are missing or stale; 3 when no device is visible.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${EQPM_DEVICE_BUILD:-build-device}"

# name:timeout(s):what
steps=(
  "preflight:10:binaries present, built from this commit and these sources; cuBLAS found"
  "info:15:eqpm info and nvidia-smi; a device is visible"
  "gpu-tests:100:GPU test suite (parity with the CPU, H=64, graphs on, reproducibility) + launch limits"
  "memcheck:30:compute-sanitizer memcheck on small configurations of every kernel"
  "racecheck:30:compute-sanitizer racecheck on the same"
  "synccheck:20:compute-sanitizer synccheck on the same"
  "bench:80:benchmarks N=1e3..1e6, B64 S16 H12, GPU and CPU; table with speed-up and roofline"
  "summary:5:summary.md and summary.json"
)
budget=300
total=0
for s in "${steps[@]}"; do total=$((total + $(echo "$s" | cut -d: -f2))); done
timeout_of() {
  local s
  for s in "${steps[@]}"; do
    [ "${s%%:*}" = "$1" ] && { echo "$s" | cut -d: -f2; return; }
  done
  echo 0
}

if [ "${1:-}" = "--dry-run" ]; then
  printf '%-10s %8s  %s\n' step timeout what
  for s in "${steps[@]}"; do
    printf '%-10s %7ss  %s\n' "${s%%:*}" "$(echo "$s" | cut -d: -f2)" "$(echo "$s" | cut -d: -f3-)"
  done
  printf '%-10s %7ss  (limit %s s)\n' total "$total" "$budget"
  [ "$total" -le "$budget" ] || { echo "the steps' timeouts exceed $budget s" >&2; exit 1; }
  exit 0
fi
[ "$total" -le "$budget" ] || { echo "device-check: timeouts add up to $total s > $budget s" >&2; exit 2; }

out="${1:?usage: tools/device-check.sh OUTDIR | --dry-run}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
: >"$out/check.log"
: >"$out/steps.tsv"
log() { echo "[device-check] $*" | tee -a "$out/check.log"; }
declare -A verdict seconds note
order=()
record() {  # step verdict seconds note
  order+=("$1")
  verdict[$1]="$2"
  seconds[$1]="$3"
  note[$1]="$4"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(timeout_of "$1")" "${4//$'\t'/ }" >>"$out/steps.tsv"
  log "$1: $2 (${3}s of $(timeout_of "$1")s) $4"
}
# run_step NAME LOGFILE CMD...: runs CMD under the step's timeout; sets rc and took.
run_step() {
  local name="$1" logfile="$2"
  shift 2
  local t0
  t0=$(date +%s)
  timeout --kill-after=5 "$(timeout_of "$name")" "$@" >"$logfile" 2>&1
  rc=$?
  took=$(($(date +%s) - t0))
}
exit_code=0
fail() { [ "$exit_code" -eq 0 ] && exit_code="$1"; }

# ------------------------------------------------------------------ preflight
t0=$(date +%s)
pre_note=""
pre_ok=PASS
commit_of() { grep -aom1 'eqpm-commit:[0-9a-f]*\(-dirty\)\?' "$1" 2>/dev/null | cut -d: -f2; }
for b in eqpm eqpm_tests eqpm_bench; do
  [ -x "$bin/$b" ] || { pre_ok=FAIL; pre_note+="$bin/$b missing (run tools/build-device.sh and carry $bin/); "; }
done
built=""
if [ "$pre_ok" = PASS ]; then
  built="$(commit_of "$bin/eqpm_tests")"
  for b in eqpm eqpm_bench; do
    [ "$(commit_of "$bin/$b")" = "$built" ] || { pre_ok=FAIL; pre_note+="$b and eqpm_tests come from different builds; "; }
  done
  head_commit="$(git rev-parse HEAD 2>/dev/null || true)"
  if [ -n "$head_commit" ] && [ "${built%-dirty}" != "$head_commit" ]; then
    pre_ok=FAIL
    pre_note+="binaries built from ${built:-an unknown commit}, checkout is $head_commit; "
  fi
  if [ -f "$bin/SOURCES.sha256" ]; then
    [ "$(cat "$bin/SOURCES.sha256")" = "$(tools/source-digest.sh)" ] ||
      { pre_ok=FAIL; pre_note+="sources changed since tools/build-device.sh; "; }
  else
    pre_ok=FAIL
    pre_note+="$bin/SOURCES.sha256 missing; "
  fi
fi
# cuBLAS is linked dynamically when the toolkit has no static archives: find this machine's copy.
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
  d="$(timeout 5 find /usr /opt -name 'libcublas.so.13' 2>/dev/null | head -n 1)"
  [ -n "$d" ] && dirname "$d"
}
cublas_dir="$(find_cublas)"
export LD_LIBRARY_PATH="$PWD/$bin/lib${cublas_dir:+:$cublas_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -x "$bin/eqpm_tests" ] && ldd "$bin/eqpm_tests" >"$out/ldd.txt" 2>&1
if grep -q 'not found' "$out/ldd.txt" 2>/dev/null; then
  pre_ok=FAIL
  pre_note+="unresolved libraries: $(grep 'not found' "$out/ldd.txt" | awk '{print $1}' | tr '\n' ' ')"
fi
record preflight "$pre_ok" $(($(date +%s) - t0)) "commit ${built:-?}; cuBLAS ${cublas_dir:-linked statically or not found}; ${pre_note}"
if [ "$pre_ok" != PASS ]; then
  fail 2
fi

# ------------------------------------------------------------------ info
gpu_name=""
if [ "$exit_code" -eq 0 ]; then
  run_step info "$out/info.txt" "$bin/eqpm" info
  timeout 10 nvidia-smi >"$out/nvidia-smi.txt" 2>&1
  gpu_name="$(timeout 5 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
  devices="$(sed -n 's/^visible CUDA devices: //p' "$out/info.txt")"
  if [ "$rc" -ne 0 ] || [ "${devices:-0}" -lt 1 ]; then
    record info FAIL "$took" "exit $rc, ${devices:-0} visible devices (see info.txt)"
    fail 3
  else
    record info PASS "$took" "$(sed -n 's/^  0: //p' "$out/info.txt")${gpu_name:+; driver: $gpu_name}"
  fi
fi

# ------------------------------------------------------------------ GPU tests
count() { grep -c "$1" "$2" 2>/dev/null || true; }
if [ "$exit_code" -eq 0 ]; then
  run_step gpu-tests "$out/gpu_tests.log" "$bin/eqpm_tests" \
    --gtest_filter='Gpu*:*Cuda*:LaunchConfig*:BuildInfo*' --gtest_output="json:$out/gpu_tests.json"
  passed=$(count '^\[       OK \]' "$out/gpu_tests.log")
  failed=$(count '^\[  FAILED  \].*(' "$out/gpu_tests.log")
  skipped=$(count '^\[  SKIPPED \].*(' "$out/gpu_tests.log")
  captures=$(count 'graph capture failed' "$out/gpu_tests.log")
  n="$passed passed, $failed failed, $skipped skipped, exit $rc"
  [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && n+=" (timed out)"
  [ "$captures" -gt 0 ] && n+=", $captures graph capture failures"
  # With a device visible no GPU test may skip.
  if [ "$rc" -ne 0 ] || [ "$failed" -gt 0 ] || [ "$captures" -gt 0 ] || [ "$skipped" -gt 0 ] || [ "$passed" -eq 0 ]; then
    record gpu-tests FAIL "$took" "$n; failed: $(grep '^\[  FAILED  \].*(' "$out/gpu_tests.log" | awk '{print $4}' | tr '\n' ' ')"
    fail 1
  else
    record gpu-tests PASS "$took" "$n"
  fi
fi

# ------------------------------------------------------------------ compute-sanitizer
find_sanitizer() {
  local c
  for c in "$(command -v compute-sanitizer 2>/dev/null)" "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" \
           /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer \
           /usr/local/cuda-*/bin/compute-sanitizer /opt/nvidia/*/compute-sanitizer/compute-sanitizer; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return; }
  done
  timeout 5 find /usr/local /opt -maxdepth 5 -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -n 1
}
# Small configurations that reach every kernel: generic and structured regret paths (score
# and pathwise), H = 64, both forward kernels, evaluation; each with a graph replay.
small='Gpu/GpuStep.MatchesCpuStageByStage/mixed_N7_B5_S2_loo_*'
small+=':Gpu/GpuStep.MatchesCpuStageByStage/dc_pathwise_q19_B1_S2_H1_*'
small+=':Gpu/GpuStep.MatchesCpuStageByStage/inv_pathwise_q0_*'
small+=':Gpu/GpuStep.MatchesCpuStageByStage/mixed_H64_*'
small+=':Gpu/GpuStep.MatchesCpuStageByStage/mixed_wide_layers_global_forward_generic'
small+=':GpuBackend.EvaluateAndPredictMatchCpu'
sanitizer="$(find_sanitizer)"
for tool in memcheck racecheck synccheck; do
  [ "$exit_code" -eq 0 ] || [ "$exit_code" -eq 1 ] || break
  if [ -z "$sanitizer" ]; then
    record "$tool" SKIP 0 "compute-sanitizer not installed (looked on PATH, in \$CUDA_HOME, /usr/local/cuda*, /opt/nvidia)"
    continue
  fi
  run_step "$tool" "$out/sanitizer_$tool.log" "$sanitizer" --tool "$tool" --error-exitcode 86 \
    --target-processes all "$bin/eqpm_tests" --gtest_filter="$small"
  errors="$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$out/sanitizer_$tool.log" | tail -n 1)"
  if grep -qiE 'Device not supported|LibraryNotLoaded|Unable to (find|load|attach)|could not be initialized|Failed to initialize' "$out/sanitizer_$tool.log"; then
    record "$tool" SKIP "$took" "compute-sanitizer cannot attach here: $(grep -iEm1 'Device not supported|LibraryNotLoaded|Unable to|could not be initialized|Failed to initialize' "$out/sanitizer_$tool.log" | cut -c1-160)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    record "$tool" TIMEOUT "$took" "no verdict within the step's timeout (${errors:-?} errors reported so far)"
  elif [ "$rc" -eq 0 ] && [ "${errors:-0}" = 0 ]; then
    record "$tool" PASS "$took" "0 errors"
  else
    record "$tool" FAIL "$took" "exit $rc, ${errors:-?} errors (sanitizer_$tool.log)"
    fail 1
  fi
done

# ------------------------------------------------------------------ benchmarks
if [ "$exit_code" -eq 0 ] || [ "$exit_code" -eq 1 ]; then
  run_step bench "$out/bench.log" "$bin/eqpm_bench" \
    --benchmark_filter='BM_Gpu(Step|RegretStage)/mixed|BM_CpuStepSameWorkload' \
    --benchmark_min_time=0.1 --benchmark_out="$out/bench.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true
  python3 tools/bench_table.py "$out/bench.json" >"$out/bench_table.md" 2>>"$out/bench.log"
  bench_errors="$(python3 - "$out/bench.json" 2>/dev/null <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except Exception as e:
    print(f"no benchmark JSON ({e})"); sys.exit()
bad = [f"{b['name']}: {b.get('error_message', '')}" for b in data.get("benchmarks", [])
       if b.get("error_occurred") or b.get("graph_capture_failures", 0) > 0]
print("; ".join(bad))
PY
)"
  if [ "$rc" -ne 0 ] || [ -n "$bench_errors" ]; then
    record bench FAIL "$took" "exit $rc; ${bench_errors}"
    fail 1
  else
    record bench PASS "$took" "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["benchmarks"]))' "$out/bench.json" 2>/dev/null) benchmarks (bench_table.md)"
  fi
fi

# ------------------------------------------------------------------ summary
status=PASS
[ "$exit_code" -ne 0 ] && status="FAIL (exit $exit_code)"
{
  echo "# eqpm device check: $status"
  echo
  echo "- commit: ${built:-unknown}"
  echo "- GPU: ${gpu_name:-unknown}"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "| step | verdict | seconds | timeout | note |"
  echo "| --- | --- | ---: | ---: | --- |"
  for s in "${order[@]}"; do
    echo "| $s | ${verdict[$s]} | ${seconds[$s]} | $(timeout_of "$s") | ${note[$s]//|//} |"
  done
  if [ -s "$out/bench_table.md" ]; then
    echo
    echo "## Benchmarks"
    echo
    cat "$out/bench_table.md"
  fi
} >"$out/summary.md"
python3 - "$out/steps.tsv" "$out/summary.json" "$status" "${built:-unknown}" "${gpu_name:-unknown}" <<'PY'
import json, sys
steps = []
for line in open(sys.argv[1]):
    name, verdict, seconds, timeout, note = line.rstrip("\n").split("\t", 4)
    steps.append({"step": name, "verdict": verdict, "seconds": int(seconds),
                  "timeout": int(timeout), "note": note})
json.dump({"status": sys.argv[3], "commit": sys.argv[4], "gpu": sys.argv[5], "steps": steps},
          open(sys.argv[2], "w"), indent=2)
PY
cat "$out/summary.md"
exit "$exit_code"
