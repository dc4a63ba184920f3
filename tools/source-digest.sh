#!/usr/bin/env bash
# One SHA-256 over the sources the binaries are built from (C++/CUDA files and CMakeLists.txt,
# by path in byte order). tools/build-device.sh stores it in build-device/SOURCES.sha256 and
# tools/device-check.sh recomputes it, so stale binaries are caught even without git.
set -euo pipefail
cd "$(dirname "$0")/.."
find CMakeLists.txt include host kernels tests benchmarks tools -type f \
  \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' -o -name 'CMakeLists.txt' \) \
  -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
