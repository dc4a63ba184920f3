#!/usr/bin/env bash
# Sets up (tools/setup.sh), builds Release and runs the whole test suite through ctest.
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
tools/newcomer.sh "$dir"
