#!/usr/bin/env bash
# Session 16, device call 3: decode cluster kernel with R row tiles per cluster (one wave; the next
# tile's A loads during the reduction) and the SS tile choice with the wide form in the cost model.
# (a) every GPU test, then vnm_spmm with R forced to 2 and 3; (b) bench spmm --decode-layers, auto R
# vs VNM_DECODE_TILES=1 (one tile per cluster, as before); (c) bench spmm --decode (single launches,
# write flush); (d) bench spmm --prefill at the Llama and two DeiT shapes; (e) Llama-2-7B prefill/decode.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -12
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for r in 2 3; do
  VNM_DECODE_TILES=$r timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_tiles_$r.txt" 2>&1
  echo "vnm_spmm VNM_DECODE_TILES=$r: rc $? $(grep Synthesis "$OUT/test_tiles_$r.txt")"
done
echo "tests done: $((SECONDS - t0)) s"
for ab in - VNM_DECODE_TILES=1; do
  echo "### decode-layers $ab" | tee -a "$OUT/decode_layers.txt"
  env ${ab/#-/VNM_AB=1} timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 2:4,64:2:8 --reps 20 2>&1 | tee -a "$OUT/decode_layers.txt" | grep llama
done
echo "decode layers done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/decode_single.txt" 2>&1
grep llama "$OUT/decode_single.txt" | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), "floor", $(NF-8), $(NF-7) "x"}'
echo "decode done: $((SECONDS - t0)) s"
timeout 150 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp --patterns 2:4,64:2:8 \
  --shapes 4096x4096,11008x4096,4096x11008,768x3072,1536x384 >"$OUT/prefill.txt" 2>&1
grep -E "^ *(llama|deit)" "$OUT/prefill.txt" | awk '{print $2, $3, $4, $5, "dense", $(NF-11), "ours", $(NF-9), $(NF-7) "x", "splt", $(NF-6) "x"}'
echo "prefill done: $((SECONDS - t0)) s"
timeout 120 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
echo "all done: $((SECONDS - t0)) s"
