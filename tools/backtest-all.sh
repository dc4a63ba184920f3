#!/usr/bin/env bash
# Out-of-sample check of every real-data setup: one rolling-origin backtest (eqpm backtest,
# monthly refits over July to December 2022, plain against q = 0, 4, 19) per region and
# setup, then a table of the pooled test regret of every run against plain.
#
#   tools/backtest-all.sh [OUT] [-- extra eqpm flags]     (default OUT: results/backtests)
#
# Setups: `default` (the default population on the region's series), the datacenter setups
# of configs/paper-dc-*.toml with --scaling mean and paper, paper-ev and paper-mixed. Each
# runs on every region's carbon-intensity series (the datacenter demand profile and the EV
# sessions stay the same; gaps of up to 24 missing hours are interpolated). Writes OUT/<region>/<setup>/ (backtest folders), OUT/logs/ and
# OUT/report.md, and prints the report. The report marks each setup against the
# out-of-sample claim: the q = 19 model's pooled mean and max at most 1% above plain's,
# and below plain's on both where the agents conflict (default and datacenter setups).
# Environment: EQPM_REGIONS (default "CISO PJM"; any of CISO PJM ERCO BPAT), EQPM_SETUPS (a
# subset of the names above), EQPM_Q (default 0,4,19), EQPM_FROM / EQPM_TO (default
# 2022-07-01 / 2022-12-31), EQPM_THREADS (default 1 for the datacenter setups, 2
# otherwise), EQPM_BIN (the program; default build/eqpm, built if needed). Exit status 1
# when a backtest fails; the claim's outcome is only reported.
set -euo pipefail
cd "$(dirname "$0")/.."

out=results/backtests
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
extra=("$@")
regions="${EQPM_REGIONS:-CISO PJM}"
qs="${EQPM_Q:-0,4,19}"
from="${EQPM_FROM:-2022-07-01}"
to="${EQPM_TO:-2022-12-31}"
data=../shared/data
python=/usr/bin/python3

if [ ! -f "$data/azure_total_demand.csv" ] || [ ! -f "$data/caltech_ev_sessions.csv" ]; then
  echo "backtest-all: the real data folder $data was not found beside the checkout; nothing to do." >&2
  exit 0
fi
. tools/eqpm-bin.sh

# name:config:scaling:threads (an empty config: the default population)
all_setups=(
  "default::mean:2"
  "paper-dc-lambda:configs/paper-dc-lambda.toml:mean:1"
  "paper-dc-lambda-paper:configs/paper-dc-lambda.toml:paper:1"
  "paper-dc-groups:configs/paper-dc-groups.toml:mean:1"
  "paper-dc-groups-paper:configs/paper-dc-groups.toml:paper:1"
  "paper-dc-both:configs/paper-dc-both.toml:mean:1"
  "paper-dc-both-paper:configs/paper-dc-both.toml:paper:1"
  "paper-ev:configs/paper-ev.toml:mean:2"
  "paper-mixed:configs/paper-mixed.toml:mean:2"
)
mkdir -p "$out/logs"
times="$out/logs/times.csv"
echo "region,setup,seconds" >"$times"
for region in $regions; do
  series="$data/carbon_intensity/${region}_2022.csv"
  if [ ! -f "$series" ]; then
    echo "backtest-all: $series not found (EQPM_REGIONS: CISO PJM ERCO BPAT)" >&2
    exit 2
  fi
  for s in "${all_setups[@]}"; do
    IFS=: read -r name config scaling threads <<<"$s"
    if [ -n "${EQPM_SETUPS:-}" ] && [[ " $EQPM_SETUPS " != *" $name "* ]]; then continue; fi
    threads="${EQPM_THREADS:-$threads}"
    # PJM's series has a 22-hour gap (23 empty rows in all): fill gaps up to a day.
    args=(backtest --from "$from" --to "$to" --q "$qs" --series "$series" --max-gap 24
          --scaling "$scaling"
          --threads "$threads" --quiet true --overwrite true --out "$out/$region/$name")
    [ -n "$config" ] && args+=(--config "$config")
    echo "backtest-all: $region $name" >&2
    start=$(date +%s.%N)
    if ! "$bin" "${args[@]}" "${extra[@]}" >"$out/logs/$region-$name.log" 2>&1; then
      echo "backtest-all: $region $name failed; its log:" >&2
      cat "$out/logs/$region-$name.log" >&2
      exit 1
    fi
    end=$(date +%s.%N)
    echo "$region,$name,$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" >>"$times"
  done
done

"$python" tools/backtest_table.py "$out" | tee "$out/report.md"
