#!/usr/bin/env bash
# Session 19, device call 2: the vnm_spmm and Llama GPU tests (wide decode form by default, the
# banded tile order test); bench spmm --prefill at the Llama shapes with the tile order chosen by
# tile_band (default) vs row-first (VNM_TILE_BAND=0, as before) vs bands of 11 row tiles; Llama-2-7B
# prefill 1 × 2048 and decode at batch 1 and 16. Logs in $OUT.
source "$(dirname "$0")/device_build.sh"
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
echo "tests: $((SECONDS - t0)) s"
AB="- VNM_TILE_BAND=0 VNM_TILE_BAND=11" bash experiments/kernels/prefill_ab.sh
for b in 1 16; do
  timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch "$b" \
    --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
  grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b$b.txt"
done
echo "all done: $((SECONDS - t0)) s"
