#!/usr/bin/env bash
# Fuzzes every input reader of eqpm (issue 7, DESIGN.md 9): builds the libFuzzer targets
# of tests/fuzz/*.cpp with clang, AddressSanitizer and UndefinedBehaviorSanitizer, writes
# seed corpora of small valid files, runs each target for SECONDS (one after another)
# and prints, per target, the seconds run, the executions and the crashes found.
#   tools/fuzz.sh [SECONDS]          (default 60 per target)
# Environment: EQPM_FUZZ_TARGETS="fuzz_a fuzz_b" runs only those targets.
# Exit status 1 when any target crashed; the inputs are kept under
# build-fuzz/artifacts/<target>/ (turn each into a regression test in tests/test_faults.cpp).
# Real data from ../shared/data, when present, seeds the corpora too, but only its first
# 50 lines, copied into a temporary folder outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: tools/fuzz.sh [SECONDS per target]" >&2
  exit 2
fi
build=build-fuzz

# ------------------------------------------------------------------ toolchain
packages=(clang libclang-rt-14-dev libomp-dev cmake ninja-build librandom123-dev
          libtomlplusplus-dev)
. tools/apt-packages.sh
ensure_packages fuzz "${packages[@]}"

# The fuzz executables get -fsanitize=fuzzer,address,undefined from CMakeLists.txt; the
# flags below also instrument eqpm_core, where the parsers live: without coverage there
# libFuzzer mutates blind, and without ASan there an overflow inside a parser goes
# unseen. UBSan findings must stop the run to count as crashes.
CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DEQPM_FUZZ=ON -DEQPM_TESTS=OFF \
  -DEQPM_BENCHMARKS=OFF -DEQPM_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
  >/dev/null
jobs="${EQPM_FUZZ_JOBS:-1}"
cmake --build "$build" -j "$jobs"

targets=()
if [ -n "${EQPM_FUZZ_TARGETS:-}" ]; then
  read -r -a targets <<<"$EQPM_FUZZ_TARGETS"
else
  for src in tests/fuzz/*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# ------------------------------------------------------------------ seed corpora
corpus="$build/corpus"
real="$(mktemp -d "${TMPDIR:-/tmp}/eqpm-fuzz-real.XXXXXX")"
trap 'rm -rf "$real"' EXIT
for t in "${targets[@]}"; do mkdir -p "$corpus/$t" "$real/$t" "$build/artifacts/$t"; done

seed() {  # seed TARGET NAME: stdin becomes a seed file of TARGET
  [ -d "$corpus/$1" ] || { cat >/dev/null; return 0; }
  cat >"$corpus/$1/seed-$2"
}

# EIA-style carbon intensity, hourly, with one unreported hour (all cells empty).
{
  echo "timestamp,WND,SUN,WAT,OIL,NG,COL,NUC,OTH,avg_CI"
  for h in $(seq 0 29); do
    ts=$(printf '2022-01-01 %02d:00:00+00:00' $((h % 24)))
    [ "$h" -ge 24 ] && ts=$(printf '2022-01-02 %02d:00:00+00:00' $((h - 24)))
    if [ "$h" -eq 7 ]; then echo "$ts,,,,,,,,,"; continue; fi
    echo "$ts,3130.0,$((h * 37 % 1400)).0,2304.0,44.0,6764.0,19.0,2265.0,189.0,2$((h % 7))$((h % 10)).29592090536002"
  done
} | seed fuzz_series_csv eia.csv
printf 'timestamp,avg_CI\r\n2022-03-01T00:00Z,100\r\n2022-03-01T01:00Z,"101.5"\r\n2022-03-01T03:00Z,+99e0\r\n2022-03-01T04:00Z,98\r\n' |
  seed fuzz_series_csv crlf-jump.csv
printf '\xef\xbb\xbftimestamp,avg_CI,note\n2022/03/01 00:00:00.000-05:00,1,"a, ""quoted""\nnote"\n2022/03/01 01:00:00-0500,2,\n' |
  seed fuzz_series_csv bom-quoted.csv

# Azure-style demand trace (half-hourly), an hourly one, and the one-column format.
{
  echo "Time,Demand"
  for i in $(seq 0 47); do
    printf '2019-01-01 %02d:%02d,%d.29499678338\n' $((i / 2)) $((i % 2 * 30)) $((90000 + i * 137 % 5000))
  done
} | seed fuzz_demand_profile azure.csv
printf 'time,demand\n2019-01-01 00:00:00+00:00,1\n2019-01-01 01:00:00+00:00,2.5\n2019-01-01 02:00:00+00:00,0.5\n' |
  seed fuzz_demand_profile hourly.csv
printf 'demand\n0.75\n1.25\n1\n0.99999994\n' | seed fuzz_demand_profile one-column.csv

# Caltech ACN sessions: kept ones of 3-12 h, one too short, one done before start,
# one without done_charge, one with bad energy.
{
  echo "session_id,spaceID,start_time,done_charge,stationID,siteID,clusterID,end_time,total_power"
  echo "5bc90cb9f9af8b0d7fe77cd2,CA-496,2018/04/25 04:08,2018/04/25 06:21,2-39-78-362,0002,0039,2018/04/25 06:20,7.932"
  echo "5bc90cb9f9af8b0d7fe77cd3,CA-319,2018/04/25 06:45,2018/04/25 09:44,2-39-95-27,0002,0039,2018/04/25 17:56,10.013"
  echo "5bc90cb9f9af8b0d7fe77cd4,CA-489,2018/04/25 07:08,2018/04/25 19:08,2-39-79-380,0002,0039,2018/04/25 19:10,22.5"
  echo "5bc90cb9f9af8b0d7fe77cd5,CA-327,2018/04/25 08:00,2018/04/25 07:00,2-39-79-381,0002,0039,2018/04/25 18:00,4.1"
  echo "5bc90cb9f9af8b0d7fe77cd6,CA-320,2018/04/25 09:13,,2-39-79-382,0002,0039,2018/04/25 18:00,3.0"
  echo "5bc90cb9f9af8b0d7fe77cd7,CA-321,2018/04/25 10:13,2018/04/25 16:13,2-39-79-383,0002,0039,2018/04/25 18:00,abc"
  echo "5bc90cb9f9af8b0d7fe77cd8,CA-322,2018/04/25 11:00,2018/04/25 15:30,2-39-79-384,0002,0039,2018/04/25 18:00,6.25"
} | seed fuzz_ev_sessions caltech.csv

# population.csv (DESIGN.md 8.1), horizon 12: every family, empty weight and cells that
# do not apply left empty.
cat <<'EOF' | seed fuzz_population_csv population.csv
agent,family,weight,lambda,scale,phase,hour,k,window_start,window_end,energy,cu,co
0,datacenter,1,0.5,1.25,3,0,,,,,,
1,ev_charging,2,,,,,3,0,12,0.75,,
2,inventory,0.5,,,,11,,,,,4.5,0.25
3,datacenter,,10,0.2,-5,6,,,,,,
4,ev_charging,1,,,,,2,4,7,1.5,,
EOF

# TOML: the program's own --print-config output, and one with the grouping tables.
if "$build/eqpm" train --print-config >"$corpus/fuzz_config_toml/seed-print-config.toml" 2>/dev/null; then :; else
  rm -f "$corpus/fuzz_config_toml/seed-print-config.toml"
fi
cat <<'EOF' | seed fuzz_config_toml tables.toml
# a run configuration grouped in tables
[data]
series = "data/CISO_2022.csv"
column = "avg_CI"
max_gap = 3
scaling = "mean"
train_fraction = 0.7

[population]
agents = 50
mix = "dc=0.4,ev=0.4,inv=0.2"
dc_lambda = [0.1, 10.0]
ev_k = [1, 6]

[model]
lookback = 24
horizon = 12
hidden = [64, 64]
activation = "relu"

[objective]
q = 4.0
beta = 0.1
sigma = 0.05
samples = 16
antithetic = true

[optimiser]
lr = 1e-3
epochs = 20
warm_start_epochs = 5

[run]
backend = "cpu"
quiet = true
EOF

# Safetensors: a model, a checkpoint, a linear model and mixed dtypes, written by the
# library's own writers through the target itself.
if [ -d "$corpus/fuzz_safetensors" ]; then
  EQPM_FUZZ_WRITE_SEEDS="$root/$corpus/fuzz_safetensors" "$build/fuzz_safetensors" -runs=0 \
    >/dev/null 2>&1 || { echo "fuzz: cannot write the safetensors seeds" >&2; exit 1; }
fi

# The first 50 lines of the real files, outside the repository.
shared="${EQPM_SHARED_DATA:-$root/../shared/data}"
if [ -d "$shared" ]; then
  for f in "$shared"/carbon_intensity/*.csv; do
    [ -f "$f" ] && [ -d "$real/fuzz_series_csv" ] && head -n 50 "$f" >"$real/fuzz_series_csv/$(basename "$f")"
  done
  [ -f "$shared/azure_total_demand.csv" ] && [ -d "$real/fuzz_demand_profile" ] &&
    head -n 50 "$shared/azure_total_demand.csv" >"$real/fuzz_demand_profile/azure.csv"
  [ -f "$shared/caltech_ev_sessions.csv" ] && [ -d "$real/fuzz_ev_sessions" ] &&
    head -n 50 "$shared/caltech_ev_sessions.csv" >"$real/fuzz_ev_sessions/caltech.csv"
fi

# Dictionaries: tokens the formats are built from, so mutations speak the format.
dict_dir="$real/dicts"
mkdir -p "$dict_dir"
dict() {  # dict TOKEN...: one libFuzzer dictionary entry per token
  local t
  for t in "$@"; do
    t=${t//\\/\\\\}
    t=${t//\"/\\\"}
    t=${t//$'\r'/\\x0d}
    t=${t//$'\n'/\\x0a}
    printf '"%s"\n' "$t"
  done
}
dict , '"' '""' $'\r\n' $'\n' ':00' '+00:00' Z T - / . e308 e-320 e39 -1 0 nan inf 1e400 \
  avg_CI timestamp Time Demand demand start_time done_charge total_power datacenter \
  ev_charging inventory agent family weight lambda scale phase hour k window_start \
  window_end energy cu co 2022-01-01 2018/04/25 >"$dict_dir/csv.dict"
{
  dict '[' ']' = '"' "'" '"""' $'\n' '#' . , '{' '}' true false inf nan 1e308 0x _ \
    data population model objective optimiser run
  [ -f "$corpus/fuzz_config_toml/seed-print-config.toml" ] &&
    dict $(sed -n 's/^\([a-z_]*\) = .*/\1/p' "$corpus/fuzz_config_toml/seed-print-config.toml")
} >"$dict_dir/toml.dict"
dict '{' '}' '[' ']' : , '\u' dtype shape data_offsets __metadata__ F32 F64 I64 BF16 BOOL \
  net.0.weight net.0.bias net.1.weight net.1.bias optimizer.adam_m optimizer.adam_v \
  state.rbar eqpm.activation eqpm.config eqpm.step eqpm.adam_step eqpm.msebar relu tanh \
  gelu >"$dict_dir/safetensors.dict"

# ------------------------------------------------------------------ run
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
logs="$build/logs"
mkdir -p "$logs"
any_crash=0
results=()
for t in "${targets[@]}"; do
  exe="$build/$t"
  [ -x "$exe" ] || { echo "fuzz: no executable $exe" >&2; exit 1; }
  case "$t" in
    fuzz_safetensors) max_len=16384 dict=safetensors.dict ;;
    fuzz_config_toml) max_len=8192 dict=toml.dict ;;
    *) max_len=8192 dict=csv.dict ;;
  esac
  # A crash stops libFuzzer; start it again (keeping the corpus) until SECONDS are used,
  # so one bug does not hide the others.
  start=$(date +%s)
  execs=0 crashes=0 round=0
  signatures=()
  : >"$logs/$t.log"
  while :; do
    now=$(date +%s)
    left=$((seconds - (now - start)))
    [ "$left" -ge 1 ] || break
    round=$((round + 1))
    set +e
    "$exe" -max_total_time="$left" -max_len="$max_len" -rss_limit_mb=2048 -timeout=10 \
      -use_value_profile=1 -dict="$dict_dir/$dict" -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$t/" "$corpus/$t" "$real/$t" >"$logs/$t.round" 2>&1
    rc=$?
    set -e
    cat "$logs/$t.round" >>"$logs/$t.log"
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.round" | tail -n 1)
    execs=$((execs + ${n:-0}))
    [ "$rc" -eq 0 ] && break
    crashes=$((crashes + 1))
    sig=$(grep -m1 -E '^(FINDING:|SUMMARY:|==[0-9]+== ?ERROR:)|runtime error:|uncaught exception|out-of-memory|timeout after' \
          "$logs/$t.round" | sed 's/==[0-9]*==//; s/0x[0-9a-f]*//g' | cut -c1-200)
    signatures+=("${sig:-exit status $rc}")
    # The same bug over and over: it has been seen, stop spending time on it.
    if [ "$crashes" -ge 5 ]; then break; fi
  done
  ran=$(($(date +%s) - start))
  distinct=0
  if ((${#signatures[@]})); then
    distinct=$(printf '%s\n' "${signatures[@]}" | sort -u | wc -l)
    any_crash=1
  fi
  results+=("$(printf '%-22s %8s %12s %8s %9s' "$t" "$ran" "$execs" "$crashes" "$distinct")")
  if ((${#signatures[@]})); then
    printf '%s\n' "${signatures[@]}" | sort | uniq -c | sed "s/^/  $t: /" >>"$logs/summary-findings.txt"
  fi
  rm -f "$logs/$t.round"
done

echo
printf '%-22s %8s %12s %8s %9s\n' target seconds executions crashes distinct
printf '%s\n' "${results[@]}"
if [ "$any_crash" -ne 0 ]; then
  echo
  echo "findings (inputs under $build/artifacts/<target>/, logs under $logs/):"
  cat "$logs/summary-findings.txt"
  rm -f "$logs/summary-findings.txt"
  exit 1
fi
echo "no crashes; logs under $logs/"
