#!/usr/bin/env bash
# Weak and strong scaling of `mpirun -np K eqpm train` on this machine (CPU ranks, one thread
# each, --oversubscribe): one regret epoch of a short series (about 12 steps of B = 64,
# S = 16, H = 12) on the general regret path (--regret-path generic: every agent's regrets
# shared out) and on the default path, for K = 1 .. 4. Time per step is the training steps'
# own time from rank 0's metrics.csv (no start-up, no evaluation), the best of two runs.
# Prints a Markdown table. Strong: N fixed; weak: N per rank fixed.
#   tools/mpi-scaling.sh [BUILD_DIR]   (default: build)
# Environment: EQPM_SCALING_N (strong-scaling N, default 20000), EQPM_SCALING_PER_RANK
# (weak-scaling agents per rank, default 10000), EQPM_MPI_RANKS (default "1 2 3 4"),
# EQPM_SCALING_PATHS (default "generic auto").
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-build}/eqpm"
strong="${EQPM_SCALING_N:-20000}"
per_rank="${EQPM_SCALING_PER_RANK:-10000}"
ranks="${EQPM_MPI_RANKS:-1 2 3 4}"
paths="${EQPM_SCALING_PATHS:-generic auto}"
flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ms per step of one run: mpirun -np $1, $2 agents, then extra flags.
ms_per_step() {
  local k="$1" n="$2" best=""
  shift 2
  for _ in 1 2; do
    mpirun "${flags[@]}" -np "$k" "$bin" train --out "$work/run" --agents "$n" --series-hours 1000 \
      --epochs 1 --warm-start-epochs 0 --beta 0.1 --threads 1 --quiet true --overwrite true "$@" \
      >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }
    local ms
    ms=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") c = i; next }
                  { s += $c; n = $2 } END { printf "%.1f", 1000 * s / n }' "$work/run/metrics.csv")
    if [ -z "$best" ] || awk -v a="$ms" -v b="$best" 'BEGIN { exit !(a < b) }'; then best="$ms"; fi
  done
  echo "$best"
}

load0="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "| scaling | regret path | N | $(for k in $ranks; do printf '%s rank%s | ' "$k" "$([ "$k" = 1 ] || echo s)"; done)"
echo "| --- | --- | --- | $(for _ in $ranks; do printf -- '--- | '; done)"
for path in $paths; do
  row="| strong | $path | $strong |"
  base=""
  for k in $ranks; do
    ms=$(ms_per_step "$k" "$strong" --regret-path "$path")
    [ -z "$base" ] && base="$ms"
    row+=" $ms ms ($(awk -v a="$base" -v b="$ms" 'BEGIN { printf "%.2fx", a / b }')) |"
  done
  echo "$row"
  row="| weak | $path | $per_rank per rank |"
  base=""
  for k in $ranks; do
    ms=$(ms_per_step "$k" "$((per_rank * k))" --regret-path "$path")
    [ -z "$base" ] && base="$ms"
    row+=" $ms ms ($(awk -v a="$base" -v b="$ms" 'BEGIN { printf "%.0f%%", 100 * a / b }')) |"
  done
  echo "$row"
done
echo
echo "strong: ms per step (speed-up over 1 rank); weak: ms per step (efficiency: 1 rank's time"
echo "over K ranks' at K times the agents). $(nproc) cores; load average before $load0, after"
echo "$(cut -d' ' -f1-3 /proc/loadavg)."
