#!/usr/bin/env bash
# One device call: build + gpu tests (scripts/gpu-test.sh), then Llama-2-7B decode (64:2:8) at each
# batch in BATCHES with the per-op profiler (GPU and host time per op), with and without programmatic
# dependent launch (VNM_PDL=0/1), then ncu's per-kernel GPU times of one profiled decode step (dense
# and sparse together) at batch NCU_BATCH (0: none). Logs into $OUT.
#   [BATCHES="1 16"] [PDLS="0 1"] [NCU_BATCH=16] bash experiments/llama/decode_profile.sh [DEB_DIR]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh "${1:-.deps}" || echo "GPU TESTS FAILED"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
V=build-gpu/vnmtune
args="bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 128"
for b in ${BATCHES:-1 16}; do
  for pdl in ${PDLS:-0 1}; do
    echo "== batch $b, VNM_PDL=$pdl"
    VNM_PDL=$pdl $V $args --decode-batch "$b" --steps 32 --profile 4 >"$OUT/decode_b${b}_pdl$pdl.txt" 2>&1
    grep -E "^    (dense|sparse|host|as a)" "$OUT/decode_b${b}_pdl$pdl.txt"
  done
done
[ "${NCU_BATCH:-16}" = 0 ] && exit 0
ncu --profile-from-start off --cache-control none --clock-control none --metrics gpu__time_duration.sum \
  --print-summary per-kernel $V $args --decode-batch "${NCU_BATCH:-16}" --steps 2 --profile 1 >"$OUT/ncu_decode.txt" 2>&1
echo "ncu rc $?"
