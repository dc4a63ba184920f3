#!/usr/bin/env bash
# Reproduces the paper's experiments on the real data (issue 5): one q sweep
# (q = 0, 1, 4, 19 plus the plain beta = 1 baseline) per setup of configs/paper-*.toml,
# the datacenter setups with both --scaling mean and --scaling paper, then plots
# (tools/plot_report.py) and a markdown summary of every sweep.
#
#   tools/reproduce.sh [OUT] [-- extra eqpm flags...]    (default OUT: results)
#
# Writes OUT/<setup>[-paper]/ (eqpm sweep folders: sweep.csv, mq_check.csv, one run folder
# per model, PNG plots), OUT/logs/<setup>[-paper].log (the sweep's output) and
# OUT/summary.md (sweep tables, training-split tables, the M_q check, the paper's metric
# for the datacenter setups (OUT/<setup>/<run>/paper-mean/), wall and CPU times),
# and prints the summary. Needs the real data in ../shared/data (see its README); without
# it the script says so and exits 0.
# Environment: EQPM_THREADS (CPU threads of every run; default 1 for the 50-agent
# datacenter setups, where OpenMP overhead outweighs the work, and 2 otherwise), EQPM_Q
# (default 0,1,4,19), EQPM_SETUPS (a space-separated subset of the setup names below),
# EQPM_MQ_TOL (the relative excess of the own model's M_q over the lowest one tolerated
# by the check; default 0.01), EQPM_BIN (the program; default build/eqpm, built if
# needed). Runs are deterministic: a rerun gives the same tables.
set -euo pipefail
cd "$(dirname "$0")/.."

out="results"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
extra=("$@")  # e.g. --ev-gradient score: the published tables' recipe
qs="${EQPM_Q:-0,1,4,19}"
tol="${EQPM_MQ_TOL:-0.01}"
data=../shared/data
python=/usr/bin/python3

if [ ! -f "$data/carbon_intensity/CISO_2022.csv" ] || [ ! -f "$data/azure_total_demand.csv" ] ||
   [ ! -f "$data/caltech_ev_sessions.csv" ]; then
  echo "reproduce: the real data folder $data (CISO_2022.csv, azure_total_demand.csv," \
       "caltech_ev_sessions.csv) was not found beside the checkout; nothing to reproduce." \
       "See the README for where to get the files." >&2
  exit 0
fi

. tools/eqpm-bin.sh  # sets bin: $EQPM_BIN, or build/eqpm brought up to date

# name:config:scaling:threads
all_setups=(
  "paper-dc-lambda:configs/paper-dc-lambda.toml:mean:1"
  "paper-dc-lambda-paper:configs/paper-dc-lambda.toml:paper:1"
  "paper-dc-groups:configs/paper-dc-groups.toml:mean:1"
  "paper-dc-groups-paper:configs/paper-dc-groups.toml:paper:1"
  "paper-dc-both:configs/paper-dc-both.toml:mean:1"
  "paper-dc-both-paper:configs/paper-dc-both.toml:paper:1"
  "paper-ev:configs/paper-ev.toml:mean:2"
  "paper-mixed:configs/paper-mixed.toml:mean:2"
)
setups=()
for s in "${all_setups[@]}"; do
  name="${s%%:*}"
  if [ -n "${EQPM_SETUPS:-}" ] && [[ " $EQPM_SETUPS " != *" $name "* ]]; then continue; fi
  setups+=("$s")
done
if ((${#setups[@]} == 0)); then
  echo "reproduce: EQPM_SETUPS='${EQPM_SETUPS:-}' names none of the setups" >&2
  exit 2
fi

mkdir -p "$out/logs"
times_file="$out/logs/times.csv"
echo "setup,config,scaling,threads,seconds,cpu_seconds" >"$times_file"
# CPU time (user + system) of each sweep as well as its wall time: on a machine shared with
# other work the wall time says little about the program.
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f "%U %S" -o "$out/logs/cpu.tmp")
total_start=$(date +%s.%N)
for s in "${setups[@]}"; do
  IFS=: read -r name config scaling threads <<<"$s"
  threads="${EQPM_THREADS:-$threads}"
  echo "reproduce: $name ($config, --scaling $scaling, --threads $threads)" >&2
  start=$(date +%s.%N)
  rm -f "$out/logs/cpu.tmp"
  if ! "${timer[@]}" "$bin" sweep --config "$config" --scaling "$scaling" --q "$qs" \
        --out "$out/$name" --overwrite true --threads "$threads" --quiet true "${extra[@]}" \
        >"$out/logs/$name.log" 2>&1; then
    echo "reproduce: $name failed; its log:" >&2
    cat "$out/logs/$name.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  cpu=$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { printf "%.1f", $1 + $2 }' "$out/logs/cpu.tmp" 2>/dev/null || true)
  rm -f "$out/logs/cpu.tmp"
  echo "$name,$config,$scaling,$threads,$seconds,${cpu:-}" >>"$times_file"
  echo "reproduce: $name done in ${seconds} s${cpu:+ (CPU ${cpu} s)}" >&2
  # The paper's own metric (eval --metric paper-mean: each agent scored on the test split's
  # mean forecast) for every model of the datacenter setups, beside the per-hour regret.
  if [[ "$name" == paper-dc-* ]]; then
    for run_dir in "$out/$name"/*/; do
      [ -f "$run_dir/model.safetensors" ] || continue
      if ! "$bin" eval --model "$run_dir/model.safetensors" --metric paper-mean \
            --out "$run_dir/paper-mean" --quiet true --threads "$threads" \
            >"$out/logs/$name.paper-mean.log" 2>&1; then
        echo "reproduce: eval --metric paper-mean of $run_dir failed:" >&2
        cat "$out/logs/$name.paper-mean.log" >&2
        exit 1
      fi
    done
  fi
  if ! "$python" tools/plot_report.py "$out/$name" >"$out/logs/$name.plots" 2>&1; then
    echo "reproduce: plotting $name failed:" >&2
    cat "$out/logs/$name.plots" >&2
    exit 1
  fi
done
total_end=$(date +%s.%N)
total=$(awk -v a="$total_start" -v b="$total_end" 'BEGIN { printf "%.1f", b - a }')

"$python" - "$out" "$times_file" "$tol" "$total" <<'PY'
import csv, json, math, os, sys

out, times_file, tol, total = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
setups = list(csv.DictReader(open(times_file)))


def g(v):
    """A number to 4 significant digits."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return str(v)
    return f"{v:.4g}"


def pct(v, ref):
    v, ref = float(v), float(ref)
    if ref == 0:
        return "n/a"
    return f"{100 * (v / ref - 1):+.1f}%"


lines = ["# eqpm reproduction of the paper's experiments", "",
         f"q sweep per setup plus the plain (beta = 1) baseline; total wall time {total} s "
         f"on {os.cpu_count()} CPU cores (wall times depend on whatever else the machine runs; "
         "CPU time is the user + system time of the sweep itself). Regrets are per agent, in the units of the setup's "
         "scaling (`mean`: z / mean of the training split; `paper`: min-max to [0, 10]).", "",
         "| setup | config | scaling | agents | threads | wall time (s) | CPU time (s) | M_q check |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |"]
body = []
all_ok = True
for s in setups:
    name, d = s["setup"], os.path.join(out, s["setup"])
    sweep = list(csv.DictReader(open(os.path.join(d, "sweep.csv"))))
    mq = list(csv.DictReader(open(os.path.join(d, "mq_check.csv"))))
    runs = [r["run"] for r in sweep]
    summaries = {r: json.load(open(os.path.join(d, r, "summary.json"))) for r in runs}
    agents = summaries[runs[0]]["test"]["agents"]
    ok = all(float(m["own_excess"]) <= tol for m in mq)
    worst = max(float(m["own_excess"]) for m in mq)
    all_ok &= ok
    lines.append(f"| {name} | `{s['config']}` | {s['scaling']} | {agents} | {s['threads']} | {s['seconds']} | {s['cpu_seconds'] or 'n/a'} | "
                 f"{'pass' if ok else 'FAIL'} (worst own excess {100 * worst:.2f}%) |")
    plain = next(r for r in sweep if r["run"] == "plain")
    body += ["", f"## {name}", "",
             f"`{s['config']}`, `--scaling {s['scaling']}`, {agents} agents, "
             f"wall time {s['seconds']} s (CPU {s['cpu_seconds'] or 'n/a'} s).", "",
             "Test split, per-agent regret with the deterministic forecast "
             "(change against the plain model in brackets):", "",
             "| run | q | beta | mean | var | p95-p5 | max | jain | mse |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sweep:
        if r["run"] == "plain":
            cells = [g(r[k]) for k in ("mean", "var", "p95_p5", "max")]
        else:
            cells = [f"{g(r[k])} ({pct(r[k], plain[k])})" for k in ("mean", "var", "p95_p5", "max")]
        body.append(f"| {r['run']} | {r['q'] or '-'} | {g(r['beta'])} | " + " | ".join(cells) +
                    f" | {g(r['jain'])} | {g(r['mse'])} |")
    body += ["", "Training split:", "",
             "| run | mean | var | p95-p5 | max | jain |", "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        t = summaries[r]["train_split"]
        body.append(f"| {r} | {g(t['mean'])} | {g(t['var'])} | {g(t['p95'] - t['p5'])} | "
                    f"{g(t['max'])} | {g(t['jain'])} |")
    body += ["", f"M_q check (training-split power mean of every model; the model trained at q "
             f"should be lowest within {100 * tol:g}%): {'pass' if ok else 'FAIL'}", "",
             "| measure q | " + " | ".join(runs) + " | lowest | own excess |",
             "| --- | " + " | ".join("---" for _ in runs) + " | --- | --- |"]
    for m in mq:
        body.append(f"| {m['measure_q']} | " + " | ".join(g(m[r]) for r in runs) +
                    f" | {m['lowest']} | {100 * float(m['own_excess']):.2f}% |")
    paper = {r: os.path.join(d, r, "paper-mean", "summary.json") for r in runs}
    if all(os.path.exists(p) for p in paper.values()):
        body += ["", "The paper's metric (`eval --metric paper-mean`: each agent scored on the test "
                 "split's mean forecast against its mean truth, which measures only the bias of the "
                 "average forecast):", "",
                 "| run | mean | vs plain | max | jain |", "| --- | --- | --- | --- | --- |"]
        pm = {r: json.load(open(p))["test"] for r, p in paper.items()}
        for r in runs:
            body.append(f"| {r} | {g(pm[r]['mean'])} | {pct(pm[r]['mean'], pm['plain']['mean']) if r != 'plain' else ''} | "
                        f"{g(pm[r]['max'])} | {g(pm[r]['jain'])} |")
    pngs = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    body += ["", "Plots: " + ", ".join(f"`{name}/{p}`" for p in pngs)]

lines.append("")
lines.append(f"M_q check over all setups: {'pass' if all_ok else 'FAIL'} "
             f"(tolerance: own model within {100 * tol:g}% of the lowest M_q of the sweep)")
text = "\n".join(lines + body) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
PY
