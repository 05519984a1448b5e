#!/usr/bin/env bash
# Session 15, last device call: DeiT-B forward with 64:2:6 (in 768 / 3072 split into blocks of 6):
# the gathered 2:4 form (default) vs the V:N:M kernels (VNM_PREFILL_24=0), same build.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
VNM_BUILD_ONLY=1 bash scripts/gpu-test.sh .deps >/dev/null 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ab in - VNM_PREFILL_24=0; do
  echo "### $ab" | tee -a "$OUT/bench_infer_deit_646.txt"
  env ${ab/#-/VNM_AB=1} timeout 90 build-gpu/vnmtune bench infer --model deit_base --pattern 64:2:6 2>&1 | head -12 | tee -a "$OUT/bench_infer_deit_646.txt"
done
