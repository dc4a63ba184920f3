#!/usr/bin/env bash
# The optimiser battery (DESIGN.md 5.3a): does every model of a q sweep reach the lowest
# training-split M_q of the sweep at its own q? Runs `eqpm sweep --select last` on a set
# of populations nobody tuned the defaults on (every family alone and mixed, H = 1 and
# H = 12, real series from ../shared/data and the synthetic one, 50 to 10^4 agents, two
# seeds each) and prints one row per case, seed and q: the margin of the q model's M_q
# over the lowest M_q of the sweep (plain included), and which model was lowest.
#
#   tools/optim-battery.sh [OUT] [-- extra eqpm flags...]    (default OUT: out/battery)
#
# Environment: EQPM_CASES (a space-separated subset of the case names), EQPM_SEEDS (default
# "1 2"), EQPM_Q (default 0,1,4,19), EQPM_TOL (default 0.01: the margin above which a row
# fails), EQPM_THREADS (default 2), EQPM_COMPARE (a battery.csv of an earlier run: the
# table then shows each margin before and after and the change of the own model's M_q,
# so that a change which narrows the margins by making every model worse shows). Writes OUT/<case>-s<seed>/ (sweep folders) and
# OUT/battery.csv; exits 1 when any row fails. Cases that need ../shared/data are skipped
# with a note when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

out="out/battery"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then out="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
extra=("$@")
qs="${EQPM_Q:-0,1,4,19}"
seeds="${EQPM_SEEDS:-1 2}"
tol="${EQPM_TOL:-0.01}"
threads="${EQPM_THREADS:-2}"
data=../shared/data
ci="$data/carbon_intensity"

eqpm="${EQPM_BIN:-build/eqpm}"
if [ ! -x "$eqpm" ]; then tools/setup.sh build; fi

# name|needs real data (0/1)|flags (the seed s is substituted for @S)
cases=(
  "erco-dcinv-h1|1|--series $ci/ERCO_2022.csv --agents 400 --mix dc=0.5,inv=0.5 --inv-cu 1,4 --inv-co 0.1,1 --pop-seed 42@S --seed 1@S --horizon 1 --ev-k 1,1"
  "pjm-paperdc-h1|1|--config configs/paper-dc-lambda.toml --series $ci/PJM_2022.csv --max-gap 22 --seed 2@S"
  "default-mixed|0|--pop-seed 3@S --seed @S"
  "bpat-inv-h12|1|--series $ci/BPAT_2022.csv --agents 300 --mix inv=1 --inv-cu 0.5,8 --inv-co 0.2,4 --pop-seed 5@S --seed @S"
  "synth-ev-win-h12|0|--agents 500 --mix ev=1 --ev-k 1,5 --ev-window-min 6 --pop-seed 6@S --seed @S --data-seed 1@S"
  "ciso-dc-h12|1|--series $ci/CISO_2022.csv --demand-profile $data/azure_total_demand.csv --agents 200 --mix dc=1 --dc-hour 0,11 --dc-lambda 0.1,30 --pop-seed 7@S --seed @S"
  "synth-dcinv-h1|0|--agents 50 --mix dc=0.3,inv=0.7 --horizon 1 --ev-k 1,1 --inv-cu 0.3,3 --inv-co 0.3,3 --pop-seed 8@S --seed @S"
  "pjm-mixed-ev-h12|1|--config configs/paper-mixed.toml --series $ci/PJM_2022.csv --max-gap 22 --ev-sample 500 --pop-seed 9@S --seed @S"
  "synth-mixed-10k|0|--agents 10000 --mix dc=0.3,ev=0.3,inv=0.4 --epochs 12 --warm-start-epochs 3 --lr-decay-epochs 3 --pop-seed 10@S --seed @S"
)

mkdir -p "$out"
csv="$out/battery.csv"
echo "case,seed,q,own_mq,lowest_mq,lowest_run,margin,seconds" >"$csv"
have_data=1
[ -f "$ci/CISO_2022.csv" ] || have_data=0
for c in "${cases[@]}"; do
  IFS='|' read -r name real flags <<<"$c"
  if [ -n "${EQPM_CASES:-}" ] && [[ " $EQPM_CASES " != *" $name "* ]]; then continue; fi
  if [ "$real" = 1 ] && [ "$have_data" = 0 ]; then
    echo "battery: $name skipped ($data not found)" >&2
    continue
  fi
  for s in $seeds; do
    dir="$out/$name-s$s"
    # shellcheck disable=SC2086
    read -r -a args <<<"${flags//@S/$s}"
    start=$(date +%s.%N)
    "$eqpm" sweep "${args[@]}" --q "$qs" --select last --threads "$threads" --quiet \
      --overwrite --out "$dir" "${extra[@]}" >"$dir.log" 2>&1 ||
      { echo "battery: $name seed $s failed, see $dir.log" >&2; tail -5 "$dir.log" >&2; exit 2; }
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    /usr/bin/python3 - "$dir/mq_check.csv" "$name" "$s" "$secs" >>"$csv" <<'EOF'
import csv, sys
path, name, seed, secs = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
for r in rows:
    q = r["measure_q"]
    runs = [k for k in r if k not in ("measure_q", "lowest", "own_excess", "beaten_by", "pass")]
    own = float(r["q=" + q])
    best_run = min(runs, key=lambda k: float(r[k]))
    best = float(r[best_run])
    print(f"{name},{seed},{q},{own:.6g},{best:.6g},{best_run},{own / best - 1:.5f},{float(secs):.1f}")
EOF
  done
done

/usr/bin/python3 - "$csv" "$tol" "${EQPM_COMPARE:-}" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tol = float(sys.argv[2])
before = {}
if sys.argv[3]:
    for r in csv.DictReader(open(sys.argv[3])):
        before[(r["case"], r["seed"], r["q"])] = r
head = f"{'case':<20} {'seed':>4} {'q':>4} {'margin':>8}  {'lowest':<7}"
if before:
    head += f" {'before':>8}  {'own M_q vs before':>17}"
print(head)
fails = 0
for r in rows:
    m = float(r["margin"])
    bad = m > tol
    fails += bad
    line = f"{r['case']:<20} {r['seed']:>4} {r['q']:>4} {100 * m:7.2f}%  {r['lowest_run']:<7}"
    b = before.get((r["case"], r["seed"], r["q"]))
    if b:
        change = float(r["own_mq"]) / float(b["own_mq"]) - 1
        line += f" {100 * float(b['margin']):7.2f}%  {100 * change:+16.2f}%"
    print(line + ("  FAIL" if bad else ""))
worst = max((float(r["margin"]) for r in rows), default=0.0)
print(f"\n{len(rows)} rows, {fails} above {100 * tol:g}%, worst margin {100 * worst:.2f}%")
sys.exit(1 if fails else 0)
EOF
