#!/usr/bin/env bash
# Session 19, device call 5 (final build): every GPU test; the decode A/B of VNM_DECODE_AFIRST (the
# first row tile's A loads of k-steps >= 4 / all issued after the B build; vnm_spmm test with 4);
# bench spmm --prefill at the Llama shapes; Llama-2-7B prefill 1 × 2048 and decode at batch 1.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; t0=$SECONDS
VNM_SKIP_CPU=1 bash scripts/gpu-test.sh .deps 2>&1 | grep -E "Synthesis|Passed|Failed|rc" | tail -20
echo "tests: $((SECONDS - t0)) s"
SKIP_TEST=1 PATTERNS=64:2:8 TEST_AB=VNM_DECODE_AFIRST=4 AB="- VNM_DECODE_AFIRST=4 VNM_DECODE_AFIRST=0 -" \
  bash experiments/kernels/decode_ab.sh
export LD_LIBRARY_PATH=/opt/vnmdeps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
timeout 150 build-gpu/vnmtune bench spmm --prefill --reps 10 --no-table --no-mmasp \
  --patterns 2:4,64:2:8 --shapes 11008x4096,4096x11008,4096x4096 >"$OUT/prefill.txt" 2>&1
grep -E "^ *llama" "$OUT/prefill.txt" | cut -c13-135
timeout 100 build-gpu/vnmtune bench infer --model llama2_7b --pattern 64:2:8 --batches 1 --seq 2048 --decode-batch 1 \
  --steps 32 >"$OUT/bench_infer_llama_b1.txt" 2>&1
grep -E "^    1 |ratio|kernels" "$OUT/bench_infer_llama_b1.txt"
echo "all done: $((SECONDS - t0)) s"
