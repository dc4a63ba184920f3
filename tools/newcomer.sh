#!/usr/bin/env bash
# A new user's first session, every step checked: generate a population, edit it, train a
# small model, stop it with SIGTERM, resume it, get forecasts, evaluate it and draw the
# report. Run by tools/test.sh; takes well under a minute.
#   tools/newcomer.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
eqpm="$(pwd)/${1:-build}/eqpm"
[ -x "$eqpm" ] || { echo "newcomer: $eqpm not built" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "newcomer: FAILED: $*" >&2; exit 1; }
step() { echo "newcomer: $*"; }

step "generate a population"
"$eqpm" generate --agents 60 --out "$work/pop.csv" 2>/dev/null
[ "$(wc -l < "$work/pop.csv")" -eq 61 ] || fail "generate wrote $(wc -l < "$work/pop.csv") lines"

step "edit it: agent 0 counts twice"
awk -F, 'BEGIN { OFS = "," } NR == 2 { $3 = 2 } { print }' "$work/pop.csv" > "$work/pop2.csv"
[ "$(sed -n 2p "$work/pop2.csv" | cut -d, -f3)" = 2 ] || fail "the edit did not take"

step "train, and stop it with SIGTERM"
run="$work/run"
"$eqpm" train --population "$work/pop2.csv" --series-hours 3000 --epochs 40 \
  --warm-start-epochs 1 --hidden 16 --threads 1 --checkpoint-every 5 --quiet --out "$run" \
  2> "$work/train.log" &
pid=$!
# The default --beta auto trains one candidate per beta (run/beta=<b>/), each with its own
# checkpoint; stop it inside the first.
checkpoints() { ls "$run"/checkpoint.safetensors "$run"/beta=*/checkpoint.safetensors 2>/dev/null; }
for _ in $(seq 1 600); do
  [ -n "$(checkpoints)" ] && break
  sleep 0.02
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 143 ] || fail "train exited $rc after SIGTERM, expected 143: $(cat "$work/train.log")"
grep -q "resume with: eqpm train --resume $run" "$work/train.log" || fail "no resume hint"
[ -n "$(checkpoints)" ] || fail "no checkpoint after SIGTERM"
[ ! -f "$run/summary.json" ] || fail "a stopped run wrote summary.json"

step "resume it"
"$eqpm" train --resume "$run" --quiet > "$work/resume.log"
[ -f "$run/summary.json" ] && [ -f "$run/model.safetensors" ] || fail "resume wrote no results"
[ "$(wc -l < "$run/metrics.csv")" -eq 41 ] || fail "metrics.csv lacks epochs"
[ "$(grep -c ',1$' "$run/beta_auto.csv")" -eq 1 ] || fail "beta_auto.csv names no chosen beta"

step "predict"
"$eqpm" predict --model "$run/model.safetensors" --out "$work/forecasts.csv" 2>/dev/null
head -1 "$work/forecasts.csv" | grep -q '^timestamp,h1,.*,h12$' || fail "forecast header"
[ "$(wc -l < "$work/forecasts.csv")" -eq $((1 + 3000 - 24 + 1)) ] || fail "forecast rows"

step "eval"
"$eqpm" eval --model "$run/model.safetensors" --threads 1 --out "$work/eval" \
  > "$work/eval.log" 2>&1 || fail "eval: $(cat "$work/eval.log")"
grep -q "population $run/population.csv" "$work/eval.log" || fail "eval did not use the saved population"
cmp -s "$run/agents.csv" "$work/eval/agents.csv" || fail "eval disagrees with the run's agents.csv"

step "report"
if /usr/bin/python3 -c "import matplotlib, numpy" 2>/dev/null; then
  /usr/bin/python3 tools/plot_report.py "$run" > "$work/report.log" 2>&1 ||
    fail "plot_report: $(cat "$work/report.log")"
  [ -f "$run/training_curves.png" ] || fail "no training_curves.png"
  [ -f "$run/regret_boxplot.png" ] || fail "no regret_boxplot.png for a single run"
  /usr/bin/python3 tools/plot_report.py "$work/eval" > "$work/report-eval.log" 2>&1 ||
    fail "plot_report on the eval folder: $(cat "$work/report-eval.log")"
  [ -f "$work/eval/regret_boxplot.png" ] || fail "no regret_boxplot.png for the eval folder"
else
  step "report skipped: /usr/bin/python3 cannot import matplotlib and numpy"
fi
step "all steps passed"
