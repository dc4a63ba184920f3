# Sourced by the experiment scripts (reproduce.sh, backtest-all.sh, compare-outputs.sh) from
# the repository root: sets `bin` to the eqpm program to run. $EQPM_BIN when given (run as
# is); otherwise build/eqpm, brought up to date first (a fresh checkout gets the whole
# setup, tools/setup.sh build; an existing build folder only rebuilds the program, a no-op
# when it is current).
if [ -n "${EQPM_BIN:-}" ]; then
  bin="$EQPM_BIN"
else
  bin=build/eqpm
  if [ ! -x build/eqpm ] || [ ! -f build/CMakeCache.txt ]; then
    echo "$(basename "$0"): building (tools/setup.sh build)" >&2
    tools/setup.sh build
  else
    cmake --build build --target eqpm -j "$(nproc 2>/dev/null || echo 2)" >/dev/null
  fi
fi
