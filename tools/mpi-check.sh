#!/usr/bin/env bash
# Training across MPI ranks gives the files of one process, bit for bit: a few small runs
# (the mixed population on the default path, with windowed EV classes, and on the reference
# regret path) once in one process without mpirun, then under `mpirun -np K` for each K of
# EQPM_MPI_RANKS, each into the same --out path. Compared with the one-process run:
# checkpoint.safetensors and model.safetensors (tensor names, dtypes, shapes and bytes, and
# every metadata field but the wall times), agents.csv byte for byte, and metrics.csv
# without its seconds column (tools/compare-outputs.sh's method). Then a small sweep and an
# eval of its model at 3 ranks, and a longer run stopped three ways under mpirun (rank
# 1 killed with SIGKILL, SIGINT to rank 1 alone, SIGINT to mpirun as Ctrl-C sends it), each
# checkpoint checked whole and resumed with another rank count, to the files of the run
# never stopped. --fast-reduce: one process gives the default's files bit for bit; mpirun
# -np 2 gives the same files twice, and one process's to rounding (close, below). Exit
# status 1 on a difference; 0 with a message when mpirun or an MPI build is missing
# (nothing to check).
#   tools/mpi-check.sh [BUILD_DIR]      (default: build)
# Environment: EQPM_MPI_RANKS (default "1 2 3 4"), EQPM_THREADS (threads per rank, default 1;
# results do not depend on it).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
bin="$dir/eqpm"
ranks="${EQPM_MPI_RANKS:-1 2 3 4}"
threads="${EQPM_THREADS:-1}"
if ! command -v mpirun >/dev/null 2>&1; then
  echo "mpi-check: skipped: mpirun not found (tools/setup.sh installs openmpi-bin)"
  exit 0
fi
if [ ! -x "$bin" ] || ! "$bin" info | grep -q "^MPI compiled in: yes"; then
  echo "mpi-check: skipped: $bin is not an MPI build (configure with MPI found, EQPM_MPI=AUTO or ON)"
  exit 0
fi
mpirun_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpirun_flags+=(--allow-run-as-root)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

base=(--agents 300 --mix dc=0.3,ev=0.4,inv=0.3 --epochs 3 --warm-start-epochs 1 --beta 0.1
      --threads "$threads" --quiet true --overwrite true)
cases=("mixed:"
       "ev-windows:--ev-window-min 6"
       "reference:--regret-path reference")

# compare REF NEW [KEY...]: KEYs of the recorded configuration (eqpm.config) not compared.
compare() {
  /usr/bin/python3 - "$@" <<'PY'
import json, struct, sys

ref, new = sys.argv[1], sys.argv[2]
UNCOMPARED = sys.argv[3:]
# Wall times: the last field of these, the seconds column of the metrics.
TIMED = ("eqpm.epoch_tally", "eqpm.train_totals")


def metrics(text):
    lines = text.splitlines()
    col = lines[0].split(",").index("seconds")
    return [",".join(c for i, c in enumerate(l.split(",")) if i != col) for l in lines]


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", {}) or {}
    for k in TIMED:
        if k in meta:
            meta[k] = meta[k].rsplit(",", 1)[0]
    if "eqpm.metrics_csv" in meta:
        meta["eqpm.metrics_csv"] = metrics(meta["eqpm.metrics_csv"])
    if UNCOMPARED and "eqpm.config" in meta:
        config = json.loads(meta["eqpm.config"])
        for k in UNCOMPARED:
            config.pop(k, None)
        meta["eqpm.config"] = config
    t = {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
         for k, v in header.items()}
    return t, meta


differ = []
for name in ("checkpoint.safetensors", "model.safetensors"):
    (ta, ma), (tb, mb) = safetensors(f"{ref}/{name}"), safetensors(f"{new}/{name}")
    if ta != tb:
        differ.append(name + " (tensors)")
    if ma != mb:
        keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        differ.append(name + " (metadata " + ", ".join(keys) + ")")
if open(f"{ref}/agents.csv", "rb").read() != open(f"{new}/agents.csv", "rb").read():
    differ.append("agents.csv")
if metrics(open(f"{ref}/metrics.csv").read()) != metrics(open(f"{new}/metrics.csv").read()):
    differ.append("metrics.csv")
if differ:
    print("differ: " + "; ".join(differ))
    sys.exit(1)
PY
}

# Whether the run in $2 equals the one in $1 to rounding (--fast-reduce across ranks): every
# number of metrics.csv but the seconds within 1e-9 relative, every regret of agents.csv
# within 1e-6 relative (of the largest), the same columns and rows.
close() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import csv, sys

ref, new = sys.argv[1], sys.argv[2]
differ = []


def rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def numbers(a, b, skip, rel, what):
    if len(a) != len(b) or a[0] != b[0]:
        differ.append(what + " (shape)")
        return
    cols = [i for i, c in enumerate(a[0]) if c not in skip]
    worst = 0.0
    for ra, rb in zip(a[1:], b[1:]):
        for i in cols:
            try:
                x, y = float(ra[i]), float(rb[i])
            except ValueError:
                if ra[i] != rb[i]:
                    differ.append(f"{what} ({a[0][i]}: {ra[i]} vs {rb[i]})")
                continue
            worst = max(worst, abs(x - y) / max(abs(x), 1e-300) if rel == "each" else abs(x - y))
    return worst


m = numbers(rows(f"{ref}/metrics.csv"), rows(f"{new}/metrics.csv"), {"seconds"}, "each", "metrics.csv")
if m is not None and m > 1e-9:
    differ.append(f"metrics.csv (relative difference {m:.3g})")
ra, rb = rows(f"{ref}/agents.csv"), rows(f"{new}/agents.csv")
scale = max(abs(float(x)) for r in ra[1:] for x in r[2:])
a = numbers(ra, rb, {"agent", "family"}, "abs", "agents.csv")
if a is not None and a > 1e-6 * scale:
    differ.append(f"agents.csv (regrets differ by {a:.3g}, {a / scale:.3g} of the largest)")
if differ:
    print("differ: " + "; ".join(differ))
    sys.exit(1)
print(f"metrics within {m:.2g}, regrets within {a / scale:.2g} (relative)")
PY
}

fail=0
for c in "${cases[@]}"; do
  IFS=: read -r name flags <<<"$c"
  # shellcheck disable=SC2206
  args=(train --out "$work/run" "${base[@]}" $flags)
  "$bin" "${args[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
  rm -rf "$work/ref-$name"
  mv "$work/run" "$work/ref-$name"
  for k in $ranks; do
    start=$(date +%s%N)
    if ! mpirun "${mpirun_flags[@]}" -np "$k" "$bin" "${args[@]}" >"$work/log" 2>&1; then
      cat "$work/log" >&2
      echo "mpi-check: $name: mpirun -np $k failed" >&2
      exit 1
    fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if out=$(compare "$work/ref-$name" "$work/run"); then
      echo "mpi-check: $name: -np $k: identical to one process (${ms} ms)"
    else
      echo "mpi-check: $name: -np $k: $out" >&2
      fail=1
    fi
    rm -rf "$work/run"
  done
done

# --fast-reduce (sums by MPI_Allreduce, each rank its own agents' regrets): one process
# is the default's bits; -np 2 reproduces itself bit for bit and one process to rounding.
fast=(train --out "$work/run" "${base[@]}" --fast-reduce true)
"$bin" "${fast[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
if out=$(compare "$work/ref-mixed" "$work/run" fast_reduce); then
  echo "mpi-check: fast-reduce: one process: identical to the default (but the recorded setting)"
else
  echo "mpi-check: fast-reduce: one process: $out" >&2
  fail=1
fi
rm -rf "$work/run" "$work/fast-first"

# twice_at_np2 NAME FIRST ARGS...: runs `mpirun -np 2 eqpm ARGS` (writing $work/run) twice,
# the first run's folder moved to FIRST; sets ms to the second run's wall time.
twice_at_np2() {
  local name="$1" first="$2" attempt start
  shift 2
  for attempt in first again; do
    start=$(date +%s%N)
    if ! mpirun "${mpirun_flags[@]}" -np 2 "$bin" "$@" >"$work/log" 2>&1; then
      cat "$work/log" >&2
      echo "mpi-check: $name: mpirun -np 2 failed" >&2
      exit 1
    fi
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [ "$attempt" = first ]; then mv "$work/run" "$first"; fi
  done
}
twice_at_np2 fast-reduce "$work/fast-first" "${fast[@]}"
if out=$(compare "$work/fast-first" "$work/run"); then
  echo "mpi-check: fast-reduce: -np 2 twice: identical to each other (${ms} ms)"
else
  echo "mpi-check: fast-reduce: -np 2 twice: $out" >&2
  fail=1
fi
if out=$(close "$work/ref-mixed" "$work/run"); then
  echo "mpi-check: fast-reduce: -np 2: close to one process ($out)"
else
  echo "mpi-check: fast-reduce: -np 2 against one process: $out" >&2
  fail=1
fi
rm -rf "$work/run" "$work/fast-first"

# A small sweep (plain, q = 0 and q = 4, each trained across 3 ranks, with the annealing
# exchange after epoch 2) and eval of its q = 4 model (every rank evaluates it in full, rank
# 0 writes): every run's files as above, the sweep's tables and eval's agents.csv and
# summary.json byte for byte.
sweep=(sweep --out "$work/run" "${base[@]}" --epochs 4 --lr-anneal-epochs 2 --q 0,4)
# compare_sweep REF NEW: every run's files (compare) and the sweep's tables byte for byte;
# prints what differs, nothing when all is the same.
compare_sweep() {
  local r f o out=""
  for r in plain q=0 q=4; do
    o=$(compare "$1/$r" "$2/$r") || out+=" $r: $o;"
  done
  for f in sweep.csv mq_check.csv anneal_start.csv; do
    cmp -s "$1/$f" "$2/$f" || out+=" $f differs;"
  done
  echo "$out"
}
evalargs=(eval --model "$work/run/q=4/model.safetensors" --out "$work/eval" --threads "$threads")
"$bin" "${sweep[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
"$bin" "${evalargs[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
rm -rf "$work/ref-sweep" "$work/ref-eval"
mv "$work/run" "$work/ref-sweep"
mv "$work/eval" "$work/ref-eval"
for k in 3; do  # an uneven split of the chunks; the train cases above cover the others
  start=$(date +%s%N)
  if ! { mpirun "${mpirun_flags[@]}" -np "$k" "$bin" "${sweep[@]}" &&
         mpirun "${mpirun_flags[@]}" -np "$k" "$bin" "${evalargs[@]}"; } >"$work/log" 2>&1; then
    cat "$work/log" >&2
    echo "mpi-check: sweep and eval: mpirun -np $k failed" >&2
    exit 1
  fi
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  out=$(compare_sweep "$work/ref-sweep" "$work/run")
  for f in agents.csv summary.json; do
    cmp -s "$work/ref-eval/$f" "$work/eval/$f" || out+=" eval/$f differs;"
  done
  if [ -z "$out" ]; then
    echo "mpi-check: sweep and eval: -np $k: identical to one process (${ms} ms)"
  else
    echo "mpi-check: sweep and eval: -np $k:$out" >&2
    fail=1
  fi
  rm -rf "$work/run" "$work/eval"
done

# The same sweep under --fast-reduce at -np 2, twice: the states kept at the exchange gather
# every agent's smoothed regret, and the two sweeps are the same file for file.
twice_at_np2 "fast-reduce sweep" "$work/fast-sweep" "${sweep[@]}" --fast-reduce true
out=$(compare_sweep "$work/fast-sweep" "$work/run")
if [ -z "$out" ]; then
  echo "mpi-check: fast-reduce sweep: -np 2 twice: identical to each other (${ms} ms)"
else
  echo "mpi-check: fast-reduce sweep: -np 2 twice:$out" >&2
  fail=1
fi
rm -rf "$work/run" "$work/fast-sweep"

# Stopping and resuming. A longer run (30 epochs, a checkpoint every 25 steps) in one
# process is the reference; each case below stops a run under mpirun once a checkpoint
# exists, checks that the checkpoint is whole, resumes it with another rank count and
# compares the files with the reference. The run must outlast the signal's way through
# mpirun: 6 epochs (under a second on an idle machine) sometimes ended first.
long=(--out "$work/run" "${base[@]}" --epochs 30 --checkpoint-every 25)
"$bin" train "${long[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
rm -rf "$work/ref-long"
mv "$work/run" "$work/ref-long"

# The pid of rank $2 among the descendants of $1 (timeout, mpirun, the ranks; Open MPI puts
# each rank's number in its environment).
rank_pid() {
  local p
  for p in $(pgrep -P "$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return
    fi
    rank_pid "$p" "$2"
  done
}

# A checkpoint file that parses as safetensors, with every tensor's bytes present.
whole_checkpoint() {
  /usr/bin/python3 - "$1" <<'PY'
import json, os, struct, sys
path = sys.argv[1]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
if os.path.getsize(path) != 8 + n + end:
    sys.exit(f"{path}: {os.path.getsize(path)} bytes, the header describes {8 + n + end}")
PY
}

# stop_case NAME K_RUN K_RESUME HOW: trains the long run under mpirun -np K_RUN, stops it
# once a checkpoint exists (HOW: kill = SIGKILL to rank 1, a rank failing; int-rank = SIGINT
# to rank 1 alone, which every rank must agree on; int-mpirun = SIGINT to mpirun, Ctrl-C,
# which Open MPI forwards to every rank as SIGTERM), then resumes with K_RESUME ranks (1:
# one process without mpirun).
stop_case() {
  local name="$1" k="$2" k2="$3" how="$4" pid victim rc=0 start ms
  start=$(date +%s%N)
  rm -rf "$work/run"
  # Ranks that disagree on when to stop would wait for each other for ever: a time limit.
  timeout -k 10 120 mpirun "${mpirun_flags[@]}" -np "$k" "$bin" train "${long[@]}" >"$work/log" 2>&1 &
  pid=$!
  while [ ! -f "$work/run/checkpoint.safetensors" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
  victim=$(rank_pid "$pid" 1)
  case "$how" in
    kill) [ -n "$victim" ] && kill -KILL "$victim" ;;
    int-rank) [ -n "$victim" ] && kill -INT "$victim" ;;
    int-mpirun) victim=$(pgrep -P "$pid" -x mpirun); [ -n "$victim" ] && kill -INT "$victim" ;;
  esac
  wait "$pid" || rc=$?
  if [ -z "${victim:-}" ] || [ "$rc" = 0 ]; then
    cat "$work/log" >&2
    echo "mpi-check: $name: the run ended before it could be stopped (rc $rc); lengthen it" >&2
    return 1
  fi
  if [ "$rc" = 124 ] || { [ "$rc" = 137 ] && [ "$how" != kill ]; }; then
    cat "$work/log" >&2
    echo "mpi-check: $name: the ranks did not end within 120 s (they disagree on when to stop)" >&2
    return 1
  fi
  if [ "$how" != kill ] && ! grep -q "^eqpm: stopped by SIG[A-Z]* after step" "$work/log"; then
    cat "$work/log" >&2
    echo "mpi-check: $name: the ranks did not stop together with a checkpoint" >&2
    return 1
  fi
  if [ -e "$work/run/model.safetensors" ]; then
    echo "mpi-check: $name: the stopped run wrote a model (it should have stopped mid-run)" >&2
    return 1
  fi
  whole_checkpoint "$work/run/checkpoint.safetensors" || return 1
  local resume=(train --resume "$work/run" --threads "$threads" --quiet true)
  if [ "$k2" = 1 ]; then
    "$bin" "${resume[@]}" >"$work/log" 2>&1 || { cat "$work/log" >&2; return 1; }
  else
    mpirun "${mpirun_flags[@]}" -np "$k2" "$bin" "${resume[@]}" >"$work/log" 2>&1 ||
      { cat "$work/log" >&2; return 1; }
  fi
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  local out
  if out=$(compare "$work/ref-long" "$work/run"); then
    echo "mpi-check: $name: stopped at -np $k, resumed at -np $k2: identical to ${ref_label:-one process} (${ms} ms)"
  else
    echo "mpi-check: $name: stopped at -np $k, resumed at -np $k2: $out" >&2
    return 1
  fi
}
stop_case "rank 1 killed (SIGKILL)" 3 2 kill || fail=1
stop_case "SIGINT to rank 1 alone" 2 3 int-rank || fail=1
stop_case "Ctrl-C to mpirun" 2 1 int-mpirun || fail=1

# --fast-reduce: the checkpoint gathers every agent's smoothed regret from the rank that
# holds it, so a run stopped and resumed at -np 2 ends with the files of one never stopped
# at -np 2 (the same rank count: its results are reproducible per rank count).
long+=(--fast-reduce true)
rm -rf "$work/run"
mpirun "${mpirun_flags[@]}" -np 2 "$bin" train "${long[@]}" >"$work/log" 2>&1 ||
  { cat "$work/log" >&2; exit 1; }
rm -rf "$work/ref-long"
mv "$work/run" "$work/ref-long"
ref_label="the uninterrupted -np 2 run" stop_case "fast-reduce, Ctrl-C to mpirun" 2 2 int-mpirun || fail=1

[ "$fail" = 0 ] && echo "mpi-check: every run identical to one process" || exit 1
