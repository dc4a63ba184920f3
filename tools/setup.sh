#!/usr/bin/env bash
# Installs what eqpm needs on a fresh Debian machine (only what is missing), then
# configures and builds it. Used by tools/test.sh and tools/demo.sh.
#   tools/setup.sh [BUILD_DIR] [extra cmake args...]
# Environment: EQPM_BUILD_TYPE (default Release), CI=true turns warnings into errors.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${1:-build}"
shift || true

. tools/apt-packages.sh
ensure_packages setup "${EQPM_BUILD_PACKAGES[@]}"

# nvcc is often installed outside PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ] && [ "${EQPM_NO_CUDA:-0}" != 1 ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
cuda_flag=()
[ "${EQPM_NO_CUDA:-0}" = 1 ] && cuda_flag=(-DEQPM_CUDA=OFF)

cmake -S . -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE="${EQPM_BUILD_TYPE:-Release}" -DEQPM_WERROR="$werror" \
  "${cuda_flag[@]}" "$@" >/dev/null
jobs="$(nproc 2>/dev/null || echo 2)"
cmake --build "$build_dir" -j "$jobs"
