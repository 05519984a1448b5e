#!/usr/bin/env bash
# Session 17, device call 1: decode A through a shared-memory ring filled by bulk copies
# (VNM_DECODE_RING=D slots, 0 = the register kernel of Session 16). (a) vnm_spmm and Llama GPU tests
# with the defaults; vnm_spmm with the register kernel, and the ring with R forced to 3 (slots
# reused); (b) bench spmm --decode-layers for D = 0, 1, 2, 3; (c) Llama-2-7B decode.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
t0=$SECONDS
VNM_SKIP_CPU=1 VNM_GPU_TESTS='vnm_spmm|llama' bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -8
cp "$OUT/gpu-tests.log" "$OUT/gpu_tests.log" 2>/dev/null
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for ab in VNM_DECODE_RING=0 VNM_DECODE_RING=3,VNM_DECODE_TILES=3 VNM_DECODE_RING=1,VNM_DECODE_TILES=2; do
  IFS=, read -r -a vars <<<"$ab"
  env "${vars[@]}" timeout 90 build-gpu/gpu_test_vnm_spmm >"$OUT/test_${ab//[=,]/_}.txt" 2>&1
  echo "vnm_spmm $ab: rc $? $(grep Synthesis "$OUT/test_${ab//[=,]/_}.txt")"
done
echo "tests done: $((SECONDS - t0)) s"
for r in 0 1 2 3; do
  echo "### decode-layers VNM_DECODE_RING=$r" | tee -a "$OUT/decode_layers.txt"
  VNM_DECODE_RING=$r timeout 100 build-gpu/vnmtune bench spmm --decode-layers --patterns 64:2:8${PAT24:-} --reps 20 2>&1 |
    tee -a "$OUT/decode_layers.txt" | grep llama | awk '{print $2, $3, $4, $7, "dense", $8, "ours", $9, "floor", $10, $11 "x"}'
  echo "($((SECONDS - t0)) s)"
done
timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 --steps 32 \
  >"$OUT/bench_infer_llama.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama.txt"
echo "all done: $((SECONDS - t0)) s"
