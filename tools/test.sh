#!/usr/bin/env bash
# Sets up (tools/setup.sh), builds Release and runs the whole test suite through ctest.
# GPU tests skip cleanly without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh build
cd build
ctest --output-on-failure -j "$(nproc 2>/dev/null || echo 2)" --timeout 600
cd ..
tools/newcomer.sh build
