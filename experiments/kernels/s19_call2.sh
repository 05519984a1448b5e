#!/usr/bin/env bash
# Session 19, device call 2: the vnm_spmm and Llama GPU tests (wide decode form by default, the
# banded tile order test); bench spmm --prefill at the Llama shapes with the tile order chosen by
# tile_band (default) vs row-first (VNM_TILE_BAND=0, as before) vs bands of 11 row tiles; Llama-2-7B
# prefill 1 × 2048 and decode at batch 1 and 16. Logs in $OUT.
source "$(dirname "$0")/device_build.sh"
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
echo "tests: $((SECONDS - t0)) s"
for ab in - VNM_TILE_BAND=0 VNM_TILE_BAND=11; do
  echo "### prefill $ab" >>"$OUT/prefill.txt"
  env ${ab/#-/VNM_AB=1} timeout 150 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp --no-check \
    --patterns 2:4,64:2:8 --shapes 11008x4096,4096x11008,4096x4096 >"$OUT/prefill_one.txt" 2>&1
  cat "$OUT/prefill_one.txt" >>"$OUT/prefill.txt"
  echo "## prefill $ab ($((SECONDS - t0)) s)"
  grep -E "^ *llama" "$OUT/prefill_one.txt" | cut -c13-125
done
for b in 1 16; do
  timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch "$b" \
    --steps 32 >"$OUT/bench_infer_llama_b$b.txt" 2>&1
  grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b$b.txt"
done
echo "all done: $((SECONDS - t0)) s"
