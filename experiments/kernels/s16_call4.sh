#!/usr/bin/env bash
# Session 16, device call 4: decode partial sums in two alternating buffers (one cluster barrier per
# row tile). (a) vnm_spmm and Llama GPU tests, vnm_spmm with R forced to 3; (b) bench spmm
# --decode-layers and --decode; (c) Llama-2-7B decode; (d) the select-vm table with this session's
# prefill tile choice.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
VNM_DECODE_TILES=3 timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_tiles_3.txt" 2>&1
echo "vnm_spmm VNM_DECODE_TILES=3: rc $? $(grep Synthesis "$OUT/test_tiles_3.txt")"
echo "tests done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 2:4,64:2:8 --reps 20 >"$OUT/decode_layers.txt" 2>&1
grep llama "$OUT/decode_layers.txt"
timeout 100 build-gpu/vnmtune bench spmm --decode --patterns 64:2:8 --no-mmasp --reps 20 >"$OUT/decode_single.txt" 2>&1
grep llama "$OUT/decode_single.txt" | awk '{print $2, $3, $4, "dense", $(NF-11), "ours", $(NF-9), "floor", $(NF-8), $(NF-7) "x"}'
echo "decode done: $((SECONDS - t0)) s"
timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
echo "llama done: $((SECONDS - t0)) s"
timeout 200 build-gpu/vnmtune bench spmm --reps 5 --table-only "$OUT/spmm_table_h200.txt" >"$OUT/spmm_table_run.txt" 2>&1
tail -3 "$OUT/spmm_table_run.txt"
echo "all done: $((SECONDS - t0)) s"
