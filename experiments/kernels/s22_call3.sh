#!/usr/bin/env bash
# Session 22, device call 3 (final build): the decode kernel with LDS staged gathers in <4, DC_KC>
# only and the column pairs loaded right before each gather in <4, DC_KC_WIDE> (per token half in
# <1, DC_KC_WIDE>): every GPU test; vnm_spmm with pull above n = 4; --decode-layers 64:2:8, 16:2:8,
# 64:2:5, 2:4; this kernel against Session 21's (s22/revert_to_s21.patch) alternated twice on all
# three shapes; Llama-2-7B decode at batch 1 and 16.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|tests passed|rc|FAIL" | tail -12
echo "($((SECONDS - t0)) s)"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
VNM_DECODE_PUSH_N=4 timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_pull.txt" 2>&1; echo "vnm_spmm PUSH_N=4: rc $? $(grep Synthesis "$OUT/test_pull.txt")"
timeout 150 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,16:2:8,64:2:5,2:4 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $3, $4, $5, "dense", $8, "ours", $9, $11 "x"}' | tr '\n' ';'; echo
PATTERNS=64:2:8,16:2:8 SHAPES=4096x4096,11008x4096,4096x11008 bash experiments/kernels/decode_variants.sh \
  s22:- s21:experiments/kernels/s22/revert_to_s21.patch
for b in 1 16; do
  timeout 100 /tmp/vnmtune_s22 bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch "$b" \
    --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
  grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b$b.txt"
done
echo "all done: $((SECONDS - t0)) s"
