#!/usr/bin/env bash
# Sets up (tools/setup.sh), builds Release and runs the whole test suite through ctest, checks
# that training under mpirun gives the files of one process (tools/mpi-check.sh; skipped
# with a message without mpirun or an MPI build), then installs the Python package with pip into build-python/venv and runs its tests (pytest).
# GPU tests skip cleanly without a CUDA device.
#   EQPM_BUILD_DIR   the build folder (default: build); CI uses the GPU machine's build
#                    (tools/build-device.sh), so one build serves both
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${EQPM_BUILD_DIR:-build}"
tools/setup.sh "$dir"
cd "$dir"
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 600
cd ..
tools/mpi-check.sh "$dir"
tools/newcomer.sh "$dir"

# The Python package (pyproject.toml), installed by pip into a virtual environment of its
# own (build-python/), then its tests against the program just built. torch is not
# installed here, so the torch tests skip. EQPM_NO_CUDA=1 builds it without CUDA, as setup.sh.
. tools/apt-packages.sh
ensure_packages test python3-venv python3-dev
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ] && [ "${EQPM_NO_CUDA:-0}" != 1 ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
[ -x build-python/venv/bin/python ] || python3 -m venv build-python/venv
pip_flags=(-C build-dir=build-python/cmake)
# The module is built for the instruction set of the program it is compared with (the fast
# paths' float rounding follows -march; the tests check bit identity with the program).
march="$(sed -n 's/^EQPM_MARCH:[A-Z]*=//p' "$dir/CMakeCache.txt" 2>/dev/null || true)"
[ -f "$dir/CMakeCache.txt" ] && pip_flags+=(-C "cmake.define.EQPM_MARCH=$march")
[ "${EQPM_NO_CUDA:-0}" = 1 ] && pip_flags+=(-C cmake.define.EQPM_CUDA=OFF)
[ "${CI:-}" = "true" ] && pip_flags+=(-C cmake.define.EQPM_WERROR=ON)
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc 2>/dev/null || echo 2)" \
  build-python/venv/bin/pip install -q --disable-pip-version-check ".[test]" "${pip_flags[@]}"
EQPM_BIN="$(cd "$dir" && pwd)/eqpm" build-python/venv/bin/python -m pytest -q python/tests
