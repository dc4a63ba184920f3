#!/usr/bin/env bash
# Training across MPI ranks gives the files of one process, bit for bit: a few small runs
# (the mixed population on the default path, with windowed EV classes, and on the reference
# regret path) once in one process without mpirun, then under `mpirun -np K` for each K of
# EQPM_MPI_RANKS, each into the same --out path. Compared with the one-process run:
# checkpoint.safetensors and model.safetensors (tensor names, dtypes, shapes and bytes, and
# every metadata field but the wall times), agents.csv byte for byte, and metrics.csv
# without its seconds column (tools/compare-outputs.sh's method). Exit status 1 on a
# difference; 0 with a message when mpirun or an MPI build is missing (nothing to check).
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

compare() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, struct, sys

ref, new = sys.argv[1], sys.argv[2]
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
[ "$fail" = 0 ] && echo "mpi-check: every run identical to one process" || exit 1
