#!/usr/bin/env bash
# Session 15, device call 2: the 2:4 form over gathered inputs as the default for M = 5, 6, 7 and
# permuted inputs (A/B against VNM_PREFILL_24=0, the V:N:M gather kernels), then every GPU test.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
SHAPES=${SHAPES:-4096x4096,4096x11008,11008x4096,768x3072,1536x384,384x384} AB="- VNM_PREFILL_24=0" \
  bash experiments/kernels/ab_quick.sh .deps 2>&1 | tee "$OUT/gather_summary.txt"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 240 /opt/torch/.venv/bin/ctest --test-dir build-gpu -L gpu --output-on-failure >"$OUT/gpu_tests.txt" 2>&1
echo "gpu tests rc $?"; tail -15 "$OUT/gpu_tests.txt"
