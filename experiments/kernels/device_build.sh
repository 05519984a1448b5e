# Sourced by the one-call device scripts of experiments/kernels: strict mode, the repository root
# as working directory, $OUT (default /tmp/out), t0, the build in build-gpu (scripts/gpu-test.sh
# with .deps; exits when it fails) and the library / tool paths of the device machine.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
t0=$SECONDS
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1 || { echo "build failed"; exit 1; }
echo "build: $((SECONDS - t0)) s"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/opt/torch/.venv/bin:$PATH
