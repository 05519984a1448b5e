#!/usr/bin/env bash
# On the GPU machine: unpack the .deb dependencies, build with CUDA for sm_90a, run the gpu tests
# (label gpu) and the cpu tests. Logs into $OUT when set (build.log, gpu-tests.log, cpu-tests.log).
#   scripts/gpu-test.sh [DEB_DIR ...]     default: .deps (or ../../.deps from a .xfer/<name> copy)
# A DEB_DIR may also hold libhdf5 packages (Debian 12): used when the machine has no HDF5 headers.
# Env: VNM_BUILD (build dir, default build-gpu), VNM_SKIP_CPU=1 skips the cpu tests, VNM_BUILD_ONLY=1 all tests,
# VNM_GPU_TESTS=REGEX only the gpu tests it matches (ctest -R).
set -uo pipefail
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/vnmtune-gpu-logs}
BUILD=${VNM_BUILD:-build-gpu}
PREFIX=/opt/vnmdeps
mkdir -p "$LOG" "$PREFIX"
export PATH=/opt/torch/.venv/bin:$PATH

dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  for d in .deps ../../.deps; do [ -d "$d" ] && dirs+=("$d") && break; done
fi
n=0
for d in "${dirs[@]}"; do for f in "$d"/*.deb; do dpkg -x "$f" "$PREFIX" && n=$((n + 1)); done; done
echo "unpacked $n packages into $PREFIX"

extra=()
if ! ls /usr/include/hdf5.h /usr/include/hdf5/serial/hdf5.h >/dev/null 2>&1 &&
   [ -e "$PREFIX/usr/include/hdf5/serial/hdf5.h" ]; then
  echo "no system HDF5: using the unpacked Debian libhdf5"
  lib="$PREFIX/usr/lib/x86_64-linux-gnu"
  extra+=(-DHDF5_C_COMPILER_EXECUTABLE=/nonexistent -DHDF5_C_INCLUDE_DIR="$PREFIX/usr/include/hdf5/serial"
          -DHDF5_hdf5_LIBRARY_RELEASE="$lib/hdf5/serial/libhdf5.so"
          "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined -Wl,-rpath,$lib")
fi

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -1
  cmake -S . -B "$BUILD" -G Ninja -DVNMTUNE_DEPS_PREFIX="$PREFIX" -DVNMTUNE_CUDA=ON -DVNMTUNE_CUDA_ARCHS=90a "${extra[@]}" &&
    cmake --build "$BUILD" -j"$(nproc)"
} >"$LOG/build.log" 2>&1
rc=$?
tail -5 "$LOG/build.log"
if [ $rc -ne 0 ]; then
  grep -E "error|Error|FAILED" "$LOG/build.log" | head -30
  echo "BUILD FAILED (rc $rc), see build.log"
  exit $rc
fi

[ "${VNM_BUILD_ONLY:-0}" = 1 ] && exit 0
# Criterion's own dependencies (libgit2, ...) are found through the loader path, not RUNPATH
export LD_LIBRARY_PATH="$PREFIX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ctest --test-dir "$BUILD" -L gpu ${VNM_GPU_TESTS:+-R "$VNM_GPU_TESTS"} -V --timeout "${VNM_GPU_TEST_TIMEOUT:-300}" >"$LOG/gpu-tests.log" 2>&1
gpu_rc=$?
grep -E "rel err|\[FAIL|\[SKIP|Synthesis|Passed|Failed|tests passed" "$LOG/gpu-tests.log" | sed 's/^[0-9]*: //'
echo "gpu tests rc $gpu_rc"
if [ "${VNM_SKIP_CPU:-0}" != 1 ]; then
  ctest --test-dir "$BUILD" -L cpu --output-on-failure -j"$(nproc)" >"$LOG/cpu-tests.log" 2>&1
  echo "cpu tests rc $?: $(grep 'tests passed' "$LOG/cpu-tests.log")"
fi
exit $gpu_rc
