#!/usr/bin/env bash
# Session 17, device call 6: decode cluster kernel, partial sums pushed by bulk copies for n <= 4 (call 5)
# and pulled after a split cluster barrier above (call 3); column lists ahead of A; B tiles
# built by all threads. (a) vnm_spmm + Llama GPU tests; vnm_spmm with R = 3 and with clusters of 12
# and 16; (b) bench spmm --decode-layers (64:2:8, 2:4) and --decode; (c) Llama-2-7B decode;
# (no ncu).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
cp "$OUT/gpu-tests.log" "$OUT/gpu_tests.log" 2>/dev/null
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ab in VNM_DECODE_TILES=3 VNM_DECODE_SPLIT=16; do
  env $ab timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_${ab//=/_}.txt" 2>&1
  echo "vnm_spmm $ab: rc $? $(grep Synthesis "$OUT/test_${ab//=/_}.txt")"
done
echo "tests done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8,2:4 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt" | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
timeout 100 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/decode_single.txt" 2>&1
grep llama "$OUT/decode_single.txt" | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), "floor", $(NF-8), $(NF-7) "x"}'
echo "decode done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
echo "all done: $((SECONDS - t0)) s"
