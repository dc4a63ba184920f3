#!/usr/bin/env bash
# Builds the CUDA backend's tests, benchmarks and the eqpm program HERE, on the development
# machine (nvcc, GoogleTest, Google Benchmark, Random123, toml++), for a GPU machine that has
# no network and none of those packages (an H100/H200: sm_90), and gathers what must travel
# into build-device/ (kept under the 64 MiB a device run may carry):
#   build-device/eqpm, eqpm_tests, eqpm_bench   the binaries (cudart linked statically)
#   build-device/lib/                           shared libraries a bare machine may lack
#                                               (OpenMP runtime, Google Benchmark)
#   build-device/SOURCES.sha256                 tools/source-digest.sh of the sources built
# The binaries embed the commit (CMake reads it at configure time, which this script always
# runs): commit first, then build, so tools/device-check.sh finds the two equal.
# cuBLAS is not bundled (libcublasLt alone is ~540 MB): tools/device-check.sh finds the
# CUDA toolkit's or the nvidia-cublas wheel's copy on the GPU machine. The binaries need
# glibc >= 2.35 there (Ubuntu 22.04 or newer) and a driver for CUDA 13.
#
#   tools/build-device.sh            # JOBS=2 by default; CUDACXX=/path/to/nvcc if not on PATH
# The object folder build-device-obj is a complete Release build (tests and benchmarks
# included): CI runs the test suite on it (EQPM_BUILD_DIR=build-device-obj tools/test.sh).
#   # then, on the GPU machine, from the repository root (build-device/ carried along):
#   tools/device-check.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
obj=build-device-obj
out=build-device
jobs="${JOBS:-2}"
nvcc="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
. tools/apt-packages.sh
ensure_packages build-device "${EQPM_BUILD_PACKAGES[@]}"

# Without MPI: the GPU machine has no Open MPI libraries (and the CUDA backend does not yet
# share agents across ranks).
cmake -S . -B "$obj" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DEQPM_WERROR=ON -DEQPM_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" -DEQPM_MARCH=x86-64-v3 \
  -DEQPM_MPI=OFF
ninja -C "$obj" -j "$jobs" eqpm eqpm_tests eqpm_bench

rm -rf "$out"
mkdir -p "$out/lib"
for b in eqpm eqpm_tests eqpm_bench; do
  if [ -x "$obj/$b" ]; then
    cp "$obj/$b" "$out/$b"
    strip --strip-debug "$out/$b"
  fi
done
# Non-system shared libraries the binaries use (never glibc, the CUDA driver or cuBLAS).
for b in "$out"/eqpm*; do
  ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda.so*|libcublas*) ;;
    libgomp.so*|libbenchmark.so*|libgtest*.so*|libz.so*) cp -L "$lib" "$out/lib/" ;;
  esac
done
tools/source-digest.sh >"$out/SOURCES.sha256"
grep -aom1 'eqpm-commit:[0-9a-f]*\(-dirty\)\?' "$out/eqpm_tests" || true
du -sh "$out"
echo "built $out (carry it to the GPU machine and run tools/device-check.sh OUTDIR there)"
