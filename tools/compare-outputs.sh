#!/usr/bin/env bash
# Bit-for-bit regression check for refactors: runs a fixed set of sweeps and compares what
# they write with a capture made before the change.
#
#   tools/compare-outputs.sh capture DIR    run the set and keep its outputs in DIR
#   tools/compare-outputs.sh compare DIR    run it again and compare with DIR
#
# The set: the demo sweep (the embedded default, q = 0,1,4,19), and when ../shared/data is
# present two real-data sweeps (configs/paper-dc-lambda.toml and configs/paper-mixed.toml
# with a 500-session EV sample, q = 0,4,19). Compared: every run's and candidate's
# checkpoint.safetensors and model.safetensors (tensor names, dtypes, shapes and bytes; the
# metadata names the output folder and holds timings, so it is left out), agents.csv,
# metrics.csv without its seconds column, and each sweep's sweep.csv, mq_check.csv and
# beta_auto.csv (a table may have gained columns at its end since the capture: they are
# listed, and every column of the capture must be identical). Exit status 1 on the first
# sweep with a difference, listing the files.
# Environment: EQPM_BIN (default build/eqpm, built if needed), EQPM_THREADS (default 2;
# results do not depend on it).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
dir="${2:-}"
if [ "$mode" != capture ] && [ "$mode" != compare ] || [ -z "$dir" ]; then
  echo "usage: tools/compare-outputs.sh capture|compare DIR" >&2
  exit 2
fi
. tools/eqpm-bin.sh
threads="${EQPM_THREADS:-2}"
python=/usr/bin/python3
data=../shared/data

sweeps=("demo::--q 0,1,4,19")
if [ -f "$data/carbon_intensity/CISO_2022.csv" ]; then
  sweeps+=("paper-dc-lambda:configs/paper-dc-lambda.toml:--q 0,4,19"
           "paper-mixed:configs/paper-mixed.toml:--q 0,4,19 --ev-sample 500")
else
  echo "compare-outputs: $data not found; only the demo sweep is run" >&2
fi

if [ "$mode" = capture ]; then
  out="$dir"
  mkdir -p "$out"
else
  [ -d "$dir" ] || { echo "compare-outputs: no capture in $dir" >&2; exit 2; }
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' EXIT
fi

for s in "${sweeps[@]}"; do
  IFS=: read -r name config flags <<<"$s"
  args=(sweep --out "$out/$name" --overwrite true --quiet true --threads "$threads")
  [ -n "$config" ] && args+=(--config "$config")
  # shellcheck disable=SC2206
  args+=($flags)
  echo "compare-outputs: $mode $name" >&2
  "$bin" "${args[@]}" >"$out/$name.log" 2>&1 || { cat "$out/$name.log" >&2; exit 1; }
  [ "$mode" = capture ] && continue
  if ! "$python" - "$dir/$name" "$out/$name" <<'PY'
import json, os, struct, sys

ref_root, new_root = sys.argv[1], sys.argv[2]


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}


def metrics(path):
    lines = open(path).read().splitlines()
    col = lines[0].split(",").index("seconds")
    return [",".join(c for i, c in enumerate(l.split(",")) if i != col) for l in lines]


differ, compared, added = [], 0, set()
for root, _, files in os.walk(ref_root):
    for name in files:
        ref = os.path.join(root, name)
        rel = os.path.relpath(ref, ref_root)
        new = os.path.join(new_root, rel)
        if name.endswith(".safetensors"):
            same = os.path.exists(new) and tensors(ref) == tensors(new)
        elif name == "metrics.csv":
            same = os.path.exists(new) and metrics(ref) == metrics(new)
        elif name in ("agents.csv", "sweep.csv", "mq_check.csv", "beta_auto.csv"):
            same = os.path.exists(new) and open(ref, "rb").read() == open(new, "rb").read()
            if not same and os.path.exists(new):
                # Columns appended since the capture are allowed (and listed); every
                # column the capture has must hold the same text.
                r, n = open(ref).read().splitlines(), open(new).read().splitlines()
                k = len(r[0].split(",")) if r else 0
                if (len(r) == len(n) and n and n[0].split(",")[:k] == r[0].split(",") and
                        all(a == ",".join(b.split(",")[:k]) for a, b in zip(r[1:], n[1:]))):
                    same = True
                    added.add(",".join(n[0].split(",")[k:]))
        else:
            continue
        compared += 1
        if not same:
            differ.append(rel)
if compared == 0:
    print(f"compare-outputs: nothing to compare in {ref_root}", file=sys.stderr)
    sys.exit(1)
if differ:
    print(f"compare-outputs: {len(differ)} of {compared} files differ under {ref_root}:",
          file=sys.stderr)
    for d in sorted(differ)[:40]:
        print("  " + d, file=sys.stderr)
    sys.exit(1)
print(f"compare-outputs: {os.path.basename(ref_root)}: {compared} files identical" +
      (f" (new columns: {'; '.join(sorted(added))})" if added else ""))
PY
  then
    exit 1
  fi
done
[ "$mode" = capture ] && echo "compare-outputs: captured in $dir" >&2
exit 0
