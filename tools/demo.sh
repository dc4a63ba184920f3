#!/usr/bin/env bash
# Sets up (tools/setup.sh), builds Release, runs a q sweep on the embedded synthetic
# default, prints the table, writes the trade-off report (report.md) and draws the plots.
#   tools/demo.sh [OUT_DIR]   (default out/demo; an existing folder is replaced)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/demo}"
tools/setup.sh build
start=$(date +%s)
build/eqpm sweep --q 0,1,4,19 --out "$out" --overwrite
build/eqpm report "$out"
/usr/bin/python3 tools/plot_report.py "$out"
echo "demo finished in $(( $(date +%s) - start )) s; results in $out"
