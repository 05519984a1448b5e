#!/usr/bin/env bash
# Session 21, device call 4 (final build): every GPU test; vnm_spmm with partial sums pulled above
# n = 4 (VNM_DECODE_PUSH_N=4: the pull path, no longer a default); --decode-layers 64:2:8 with the
# defaults; on the shapes with several row tiles per cluster, the defaults (v0) against v4 (warp
# partial sums 64 floats per token apart, as in Session 20) and v5 (Session 20's count of row tiles
# and receive buffers; s21/v4_wld64.patch, s21/v5_oldR.patch), alternated twice; Llama-2-7B decode
# at batch 1 and 16.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|tests passed|rc|FAIL" | tail -12
echo "($((SECONDS - t0)) s)"
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
VNM_DECODE_PUSH_N=4 timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_pull.txt" 2>&1; echo "vnm_spmm PUSH_N=4: rc $? $(grep Synthesis "$OUT/test_pull.txt")"
timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,16:2:8 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $3, $4, $5, "dense", $8, "ours", $9, $11 "x"}'
bash experiments/kernels/decode_variants.sh v0_new:- v4_wld64:experiments/kernels/s21/v4_wld64.patch \
  v5_oldR:experiments/kernels/s21/v5_oldR.patch
for b in 1 16; do
  timeout 100 /tmp/vnmtune_v0_new bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch "$b" \
    --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
  grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b$b.txt"
done
echo "all done: $((SECONDS - t0)) s"
