#!/usr/bin/env bash
# The fairness objectives side by side (README "Fairness objectives compared"): one
# `eqpm sweep --objective ...` per population, each followed by `eqpm report`, then the
# training-split check (is each model the lowest of the sweep at its own objective?) and the
# report's test-split tables, with bootstrap intervals over test days.
#
#   tools/objectives-results.sh [OUT]     (default OUT: out/objectives)
#
# Populations: the embedded default (absolute and relative regrets), a synthetic one built
# to conflict (newsvendors with cu and co both over [0.1, 10] want opposite quantiles), and
# two on real carbon intensity from ../shared/data (skipped with a note when it is absent):
# ERCO 2022 with datacenter and inventory agents, CISO 2022's paper-mixed with 500 Caltech
# EV sessions. Takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/objectives}"
eqpm="${EQPM_BIN:-build/eqpm}"
if [ ! -x "$eqpm" ]; then tools/setup.sh build; fi
ci=../shared/data/carbon_intensity
objectives=power:0,4,tilt:5,cvar:0.1,group-power:4

# name|needs real data (0/1)|flags
cases=(
  "default|0|--objective power:0,4,tilt:20,cvar:0.1,group-power:4"
  "default-relative|0|--objective power:0,4,cvar:0.1 --regret-scale relative"
  "conflict|0|--objective power:0,4,tilt:2,cvar:0.1,group-power:4 --agents 600 --mix dc=0.2,ev=0.2,inv=0.6 --inv-cu 0.1,10 --inv-co 0.1,10 --pop-seed 77 --seed 5"
  "erco-dcinv|1|--objective $objectives --series $ci/ERCO_2022.csv --column avg_CI --max-gap 3 --agents 800 --mix dc=0.3,inv=0.7 --inv-cu 0.1,10 --inv-co 0.1,10 --pop-seed 9 --seed 3"
  "ciso-mixed-ev|1|--objective $objectives --config configs/paper-mixed.toml --ev-sample 500"
)
mkdir -p "$out"
for c in "${cases[@]}"; do
  IFS='|' read -r name real flags <<<"$c"
  if [ "$real" = 1 ] && [ ! -d "$ci" ]; then
    echo "== $name: skipped ($ci not found)"
    continue
  fi
  # shellcheck disable=SC2086
  "$eqpm" sweep $flags --quiet --overwrite --out "$out/$name" >"$out/$name.log" 2>&1 || true
  "$eqpm" report "$out/$name" --quiet >>"$out/$name.log" 2>&1
  echo "== $name"
  sed -n '/objective of each model\|power mean M_q of each model/,/^$/p' "$out/$name.log"
  sed -n '/^## Models/,/^Pareto/p;/^| model | mean regret | worst/,/^$/p' "$out/$name/report.md"
done
